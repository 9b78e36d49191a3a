// Command stamp prints what a release build of credbroker stamps (see package
// stamp): by default the -ldflags value, with -version only the version, with
// -tag the image tag and chart appVersion of that version. The Makefile's
// build targets use it.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/credbroker/credbroker/internal/tools/release/stamp"
)

func main() {
	onlyVersion := flag.Bool("version", false, "print only the version")
	tag := flag.Bool("tag", false, "print the image tag (and chart appVersion) of the version")
	flag.Parse()
	_, s, err := stamp.Here(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "stamp:", err)
		os.Exit(1)
	}
	switch {
	case *tag:
		fmt.Println(stamp.Tag(s.Version))
	case *onlyVersion:
		fmt.Println(s.Version)
	default:
		fmt.Println(s.LDFlags())
	}
}
