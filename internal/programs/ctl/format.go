package ctl

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/apiops-worker/apiops-worker/messages"
)

// maxErrorWidth bounds the ERROR column of a table, in characters.
const maxErrorWidth = 120

// statusOrder is the order of statuses in a summary.
var statusOrder = []messages.Status{
	messages.StatusSucceeded, messages.StatusPartial, messages.StatusFailed,
	messages.StatusRejected, messages.StatusExpired, messages.StatusSkipped,
}

// noResult is the STATUS shown for a command whose result did not arrive.
const noResult = "no result"

// cells of one result in a table: ID, TYPE, STATUS, ATTEMPTS, ENVS OK/FAILED, ERROR.
func resultCells(r *messages.Result) []string {
	return []string{
		orDash(r.ID), orDash(r.Type), statusCell(r), strconv.Itoa(r.Attempts),
		envCell(r), errorCell(r.Error),
	}
}

// storedResult marks the STATUS of a result the worker answered from its idempotency
// record ("replayed": true): the command had finished before, and nothing ran again.
const storedResult = " (stored result)"

// statusCell is the result's status, marked when it is a stored result.
func statusCell(r *messages.Result) string {
	if r.Replayed {
		return orDash(string(r.Status)) + storedResult
	}
	return orDash(string(r.Status))
}

// envCell is "ok/failed" environments: deployed, or for a verify verified; "-" when
// APIOps returned no deployment.
func envCell(r *messages.Result) string {
	if r.Verification != nil {
		ok := 0
		for _, v := range r.Verification {
			if v.Verified {
				ok++
			}
		}
		return fmt.Sprintf("%d/%d", ok, len(r.Verification)-ok)
	}
	d := r.DeploymentResult
	if d == nil {
		return "-"
	}
	ok, failed := d.EnvironmentCounts()
	return fmt.Sprintf("%d/%d", ok, failed)
}

// errorCell is "code: message (field)" on one line. A long message is shortened so
// that the cell stays within maxErrorWidth characters while code and field stay whole.
func errorCell(e *messages.Error) string {
	if e == nil {
		return ""
	}
	head, tail := oneLine(e.Code)+": ", ""
	if e.Field != "" {
		tail = " (" + oneLine(e.Field) + ")"
	}
	if e.Message == "" { // a dead letter's headers may lack it
		return strings.TrimPrefix(oneLine(e.Code)+tail, " ")
	}
	room := max(maxErrorWidth-utf8.RuneCountInString(head+tail), 20)
	return head + truncate(oneLine(e.Message), room) + tail
}

// orDash makes a value fit a table cell: on one line, "-" when empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return oneLine(s)
}

// oneLine replaces control characters (tabs, line breaks) with spaces, so that a
// value cannot break a table's layout or a terminal's.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// truncate shortens s to n characters, the last being "…" when it was longer.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// pad fits s into exactly n characters: truncated or padded with spaces.
func pad(s string, n int) string {
	s = truncate(s, n)
	return s + strings.Repeat(" ", n-utf8.RuneCountInString(s))
}

// wrapRow lays cells out in columns of widths characters, two spaces apart, for a
// table printed a row at a time (whose column widths cannot follow its longest
// cells). The last cell is left as it is (the ERROR cell, bounded by errorCell). A
// longer cell is wrapped onto lines of its own column, never cut: an id's end tells
// it apart from its neighbours (plan-1:step-2, plan-1:step-12, a:replay-1).
func wrapRow(cells []string, widths []int) string {
	wrapped := make([][]string, len(cells))
	height := 1
	for i, c := range cells {
		if i == len(cells)-1 {
			wrapped[i] = []string{c}
			continue
		}
		wrapped[i] = wrapCell(c, widths[i])
		height = max(height, len(wrapped[i]))
	}
	var b strings.Builder
	for line := range height {
		var row strings.Builder
		for i, pieces := range wrapped {
			piece := ""
			if line < len(pieces) {
				piece = pieces[line]
			}
			if i == len(wrapped)-1 {
				row.WriteString(piece)
				break
			}
			row.WriteString(pad(piece, widths[i]) + "  ")
		}
		if line > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strings.TrimRightFunc(row.String(), unicode.IsSpace))
	}
	return b.String()
}

// wrapCell splits s into pieces of at most n characters. Where it can, it breaks in
// the second half of a piece: before its last ":" (so that ":step-2" starts a line),
// else after its last "-", ".", "/", "_" or space, rather than within a word.
func wrapCell(s string, n int) []string {
	r := []rune(s)
	var pieces []string
	for len(r) > n {
		cut := n
		if i := lastIn(r[n/2:n], ":"); i >= 0 && n/2+i > 0 { // a piece of at least one character
			cut = n/2 + i
		} else if i := lastIn(r[n/2:n], "-./_ "); i >= 0 {
			cut = n/2 + i + 1
		}
		// A break at a space drops it: "succeeded (stored result)" wraps as
		// "succeeded", "(stored", "result)".
		pieces = append(pieces, strings.TrimRight(string(r[:cut]), " "))
		r = []rune(strings.TrimLeft(string(r[cut:]), " "))
	}
	return append(pieces, string(r))
}

// lastIn is the index of the last of r that is one of chars, or -1.
func lastIn(r []rune, chars string) int {
	for i := len(r) - 1; i >= 0; i-- {
		if strings.ContainsRune(chars, r[i]) {
			return i
		}
	}
	return -1
}

// summary is e.g. "11 commands: 10 succeeded, 1 partial"; missing counts the
// commands without a result.
func summary(statuses []messages.Status, missing int) string {
	results := make([]*messages.Result, len(statuses))
	for i, s := range statuses {
		results[i] = &messages.Result{Status: s}
	}
	return resultSummary(results, missing)
}

// resultSummary is summary by status and, for each status but succeeded, by the
// results' error codes, most frequent first: "3,000 commands: 2,994 succeeded, 1
// partial (deploy_failed), 5 failed (4 apiops_404, 1 retries_exhausted)". The codes
// are in parentheses so that several statuses with several codes each still read
// unambiguously; a count is left out when every result of the status has that code.
// When some results are stored ones (replayed), it says how many: "11 commands: 11
// succeeded; 11 stored results (not run again)".
func resultSummary(results []*messages.Result, missing int) string {
	counts := make(map[messages.Status]int)
	codes := make(map[messages.Status]map[string]int)
	var other []messages.Status
	replayed := 0
	for _, r := range results {
		if r.Replayed {
			replayed++
		}
		s := r.Status
		if counts[s] == 0 && !isKnownStatus(s) {
			other = append(other, s)
		}
		counts[s]++
		if s != messages.StatusSucceeded && r.Error != nil && r.Error.Code != "" {
			if codes[s] == nil {
				codes[s] = make(map[string]int)
			}
			codes[s][orDash(r.Error.Code)]++
		}
	}
	total := len(results) + missing
	noun := "commands"
	if total == 1 {
		noun = "command"
	}
	var parts []string
	for _, s := range append(append([]messages.Status(nil), statusOrder...), other...) {
		if counts[s] > 0 {
			parts = append(parts, group(counts[s], orDash(string(s)), codes[s]))
		}
	}
	if missing > 0 {
		parts = append(parts, thousands(missing)+" without a result")
	}
	line := thousands(total) + " " + noun
	if len(parts) > 0 {
		line += ": " + strings.Join(parts, ", ")
	}
	switch {
	case replayed == 1:
		line += "; 1 stored result (not run again)"
	case replayed > 1:
		line += "; " + thousands(replayed) + " stored results (not run again)"
	}
	return line
}

// group is one status in a summary: "6 failed (4 apiops_404, 2 without a code)".
func group(n int, status string, codes map[string]int) string {
	s := thousands(n) + " " + status
	if len(codes) == 0 {
		return s
	}
	names := make([]string, 0, len(codes))
	coded := 0
	for code, k := range codes {
		names = append(names, code)
		coded += k
	}
	sort.Slice(names, func(i, j int) bool {
		if codes[names[i]] != codes[names[j]] {
			return codes[names[i]] > codes[names[j]]
		}
		return names[i] < names[j]
	})
	if len(names) == 1 && coded == n {
		return s + " (" + names[0] + ")"
	}
	parts := make([]string, len(names), len(names)+1)
	for i, code := range names {
		parts[i] = thousands(codes[code]) + " " + code
	}
	if coded < n {
		parts = append(parts, thousands(n-coded)+" without a code")
	}
	return s + " (" + strings.Join(parts, ", ") + ")"
}

// thousands is n with its digits grouped by commas: 2,994.
func thousands(n int) string {
	digits := strconv.Itoa(n)
	sign := ""
	if n < 0 {
		sign, digits = "-", digits[1:]
	}
	var b strings.Builder
	for i, d := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return sign + b.String()
}

func isKnownStatus(s messages.Status) bool {
	for _, k := range statusOrder {
		if s == k {
			return true
		}
	}
	return false
}
