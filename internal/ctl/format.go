package ctl

import (
	"fmt"
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
		orDash(r.ID), orDash(r.Type), orDash(string(r.Status)), strconv.Itoa(r.Attempts),
		envCell(r.DeploymentResult), errorCell(r.Error),
	}
}

// envCell is "ok/failed" environments, or "-" when APIOps returned no deployment.
func envCell(d *messages.DeploymentResult) string {
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

// summary is e.g. "11 commands: 10 succeeded, 1 partial"; missing counts the
// commands without a result.
func summary(statuses []messages.Status, missing int) string {
	counts := make(map[messages.Status]int)
	var other []messages.Status
	for _, s := range statuses {
		if counts[s] == 0 && !isKnownStatus(s) {
			other = append(other, s)
		}
		counts[s]++
	}
	total := len(statuses) + missing
	noun := "commands"
	if total == 1 {
		noun = "command"
	}
	var parts []string
	for _, s := range append(append([]messages.Status(nil), statusOrder...), other...) {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], orDash(string(s))))
		}
	}
	if missing > 0 {
		parts = append(parts, fmt.Sprintf("%d without a result", missing))
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%d %s", total, noun)
	}
	return fmt.Sprintf("%d %s: %s", total, noun, strings.Join(parts, ", "))
}

func isKnownStatus(s messages.Status) bool {
	for _, k := range statusOrder {
		if s == k {
			return true
		}
	}
	return false
}
