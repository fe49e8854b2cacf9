// Package docs_test keeps the documentation honest: the README stays short, every
// relative link of the README and docs/ lands on a file (and heading), and the
// README's `nats` examples, run by the shell as a reader would paste them, are
// commands the worker accepts.
package docs_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/apiops-worker/apiops-worker/keystores"
	"github.com/apiops-worker/apiops-worker/messages"
)

const readme = "../README.md"

func TestREADMEIsShort(t *testing.T) {
	data, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	if lines := bytes.Count(data, []byte("\n")); lines > 220 {
		t.Errorf("README.md has %d lines: keep it near 200 and move the rest to docs/", lines)
	}
}

var markdownLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestRelativeLinksResolve follows every relative link of the README and the pages
// under docs/ and examples/: the file exists and, for a Markdown file, so does the
// heading the link's anchor names.
func TestRelativeLinksResolve(t *testing.T) {
	pages := []string{readme}
	for _, root := range []string{".", "../examples"} {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".md") {
				pages = append(pages, path)
			}
			return nil
		})
	}
	for _, page := range pages {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range markdownLink.FindAllStringSubmatch(string(outsideCode(data)), -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			target, anchor, _ := strings.Cut(link, "#")
			path := page
			if target != "" {
				path = filepath.Join(filepath.Dir(page), target)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s: link %q: %v", page, link, err)
				continue
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !headings(t, path)[anchor] {
				t.Errorf("%s: link %q: %s has no heading #%s", page, link, path, anchor)
			}
		}
	}
}

// TestREADMENatsExamples runs each `nats req`/`nats pub` example of the README with
// bash, `nats` replaced by a function that prints its arguments, from the repository
// root as a reader would; each payload must decode, without a rejection, on its
// subject, and its keystore files open.
func TestREADMENatsExamples(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	data, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	examples := 0
	for _, cmd := range shellCommands(data) {
		if !strings.HasPrefix(cmd, "nats req ") && !strings.HasPrefix(cmd, "nats pub ") {
			continue
		}
		examples++
		script := `nats() { printf '%s\0' "$@"; }; ` + cmd
		sh := exec.Command("bash", "-c", script)
		sh.Dir = ".."
		out, err := sh.Output()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, cmd)
		}
		args := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
		subject, payload := args[1], args[len(args)-1]
		project, typeName, err := messages.Subjects{}.ParseCommand(subject)
		if err != nil {
			t.Errorf("%s: %v", subject, err)
			continue
		}
		command, err := messages.Decode(project, typeName, []byte(payload))
		if err != nil {
			t.Errorf("the README's example on %s is rejected: %v", subject, err)
			continue
		}
		if _, err := keystores.CheckCommand(command, time.Now()); err != nil {
			t.Errorf("the README's example on %s has a keystore APIOps would refuse: %v", subject, err)
		}
	}
	if examples < 3 {
		t.Errorf("found %d nats examples in the README, want at least 3", examples)
	}
}

// shellCommands returns the commands of the README's sh blocks, continuation lines
// joined, comments dropped.
func shellCommands(data []byte) []string {
	var cmds []string
	var cur strings.Builder
	inSh := false
	for line := range strings.Lines(string(data)) {
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "```sh"):
			inSh = true
			continue
		case strings.HasPrefix(line, "```"):
			inSh = false
			continue
		case !inSh || cur.Len() == 0 && (strings.HasPrefix(line, "#") || strings.TrimSpace(line) == ""):
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if !strings.HasSuffix(line, `\`) && strings.Count(cur.String(), "'")%2 == 0 {
			cmds = append(cmds, cur.String())
			cur.Reset()
		}
	}
	return cmds
}

// outsideCode blanks fenced code blocks, where brackets are not links.
func outsideCode(data []byte) []byte {
	var out bytes.Buffer
	inCode := false
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
			continue
		}
		if !inCode {
			out.WriteString(line)
		}
	}
	return out.Bytes()
}

// headings returns the anchors GitHub gives a Markdown file's headings.
func headings(t *testing.T, path string) map[string]bool {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for line := range strings.Lines(string(outsideCode(data))) {
		if strings.HasPrefix(line, "#") {
			anchors[githubAnchor(strings.TrimLeft(line, "#"))] = true
		}
	}
	return anchors
}

// githubAnchor is the id GitHub gives a heading: lower case, punctuation dropped,
// spaces as hyphens.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}
