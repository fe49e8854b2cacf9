// Command apiopsctl works with apiops-worker commands from the shell.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/apiops-worker/apiops-worker/internal/ctl"
)

const usage = `usage: apiopsctl <command> [arguments]

commands:
  validate FILE|-   check JSONL commands (each line with "type" and "project");
                    prints a rejected result line per invalid command;
                    exit 0 when all are valid, 2 when some are not
`

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 1
	}
	switch args[0] {
	case "validate":
		return validate(args[1:], stdin, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "apiopsctl: unknown command %q\n%s", args[0], usage)
		return 1
	}
}

func validate(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprint(stderr, "usage: apiopsctl validate FILE|-\n")
		return 1
	}
	in, closeIn, err := openInput(args[0], stdin)
	if err != nil {
		fmt.Fprintf(stderr, "apiopsctl validate: %v\n", err)
		return 1
	}
	defer closeIn()
	total, invalid, err := ctl.Validate(in, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "apiopsctl validate: %v\n", err)
		return 1
	}
	if invalid > 0 {
		fmt.Fprintf(stderr, "%d of %d commands are invalid\n", invalid, total)
		return 2
	}
	fmt.Fprintf(stderr, "%d commands are valid\n", total)
	return 0
}

func openInput(name string, stdin io.Reader) (io.Reader, func(), error) {
	if name == "-" {
		return stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}
