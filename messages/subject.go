package messages

import (
	"fmt"
	"strings"
)

// DefaultPrefix is the first token(s) of every subject unless configured otherwise.
const DefaultPrefix = "apiops"

// The tokens that stand for a project and a type the worker could not read, in the
// subjects of a rejected command's result and dead letter: no project name holds "/",
// and no command type is called "unknown".
const (
	InvalidProject = "invalid/project"
	UnknownType    = "unknown"
)

// Subjects builds and parses the subjects of one deployment:
// <prefix>.cmd.<project>.<type>, <prefix>.result.<project>.<type> and
// <prefix>.dlq.<project>.<type>. The zero value uses DefaultPrefix.
type Subjects struct {
	Prefix string
}

func (s Subjects) prefix() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

// Command is the subject a command of type typeName for project is published on.
func (s Subjects) Command(project, typeName string) string { return s.build("cmd", project, typeName) }

// Result is the subject the result of such a command is published on.
func (s Subjects) Result(project, typeName string) string {
	return s.build("result", project, typeName)
}

// DeadLetter is the subject the dead-letter copy of such a command is published on.
func (s Subjects) DeadLetter(project, typeName string) string {
	return s.build("dlq", project, typeName)
}

// AllCommands, AllResults and AllDeadLetters are the wildcard subjects of the streams.
func (s Subjects) AllCommands() string    { return s.prefix() + ".cmd.>" }
func (s Subjects) AllResults() string     { return s.prefix() + ".result.>" }
func (s Subjects) AllDeadLetters() string { return s.prefix() + ".dlq.>" }

func (s Subjects) build(kind, project, typeName string) string {
	return s.prefix() + "." + kind + "." + project + "." + typeName
}

// ParseCommand splits a command subject into project and type. The type is returned even
// when it is not a known command type; Decode reports that.
func (s Subjects) ParseCommand(subject string) (project, typeName string, err error) {
	return s.parse("cmd", subject)
}

// ParseResult does the same for a result subject.
func (s Subjects) ParseResult(subject string) (project, typeName string, err error) {
	return s.parse("result", subject)
}

func (s Subjects) parse(kind, subject string) (project, typeName string, err error) {
	rest, ok := strings.CutPrefix(subject, s.prefix()+"."+kind+".")
	if !ok {
		return "", "", fmt.Errorf("subject %q is not under %s.%s", subject, s.prefix(), kind)
	}
	project, typeName, _ = strings.Cut(rest, ".")
	if project == "" || typeName == "" {
		return "", "", fmt.Errorf("subject %q is not %s.%s.<project>.<type>", subject, s.prefix(), kind)
	}
	return project, typeName, nil
}

// CheckPrefix returns what is wrong with a subject prefix, or "" when nothing is.
func CheckPrefix(prefix string) string {
	if strings.ContainsAny(prefix, "*>") {
		return "must not hold wildcards"
	}
	return checkSubject(prefix)
}

// ResultFor and DeadLetterFor map a command subject to its result and dead-letter
// subjects, even when the command subject does not parse as <project>.<type>.
func (s Subjects) ResultFor(commandSubject string) string {
	return s.swapKind(commandSubject, "result")
}

func (s Subjects) DeadLetterFor(commandSubject string) string {
	return s.swapKind(commandSubject, "dlq")
}

func (s Subjects) swapKind(commandSubject, kind string) string {
	return s.prefix() + "." + kind + "." + strings.TrimPrefix(commandSubject, s.prefix()+".cmd.")
}

// ReplyInbox is where replies to project's commands go: a command's replyTo lies under
// it. The worker's account exports it to the project's team account alone, so a reply
// reaches no other team, and a team cannot point the worker at a subject of another
// project or of the worker's own (docs/design/project-isolation.md).
func ReplyInbox(project string) string { return "_INBOX." + project + "." }

// checkReplyTo returns what is wrong with the replyTo of a command of project, or "".
func checkReplyTo(project, replyTo string) string {
	if problem := checkSubject(replyTo); problem != "" {
		return problem
	}
	if inbox := ReplyInbox(project); !strings.HasPrefix(replyTo, inbox) || len(replyTo) == len(inbox) {
		return "must be under " + inbox + " (the project's inbox)"
	}
	return ""
}
