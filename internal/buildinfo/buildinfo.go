// Package buildinfo says which build of the binaries runs: their version and the commit
// they were built from, as Go's build records it from the repository.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release, set at build time with
// -ldflags "-X github.com/apiops-worker/apiops-worker/internal/buildinfo.Version=…".
var Version = "0.1.0"

// Commit is the commit the binary was built from (its first 12 hex digits, "-dirty"
// added when the tree had changes), or "unknown" when the build recorded none: built
// outside a repository, or with -buildvcs=false.
func Commit() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	revision, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if revision == "" {
		return "unknown"
	}
	if len(revision) > 12 {
		revision = revision[:12]
	}
	if dirty {
		revision += "-dirty"
	}
	return revision
}

// String is what --version prints for the binary name.
func String(name string) string {
	return fmt.Sprintf("%s %s (commit %s, %s %s/%s)", name, Version, Commit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
