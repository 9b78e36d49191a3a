// Command chartpkg packages charts/credbroker as `helm package --app-version`
// does (make chart), with Helm's own packages, so that the packaged chart's
// default image tag is the tag make image gives this version.
package main

import (
	"flag"
	"fmt"
	"os"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
)

func main() {
	dir := flag.String("chart", "..", "the chart directory")
	appVersion := flag.String("app-version", "", "appVersion of the package, the credbroker image tag (make -s stamp-tag)")
	out := flag.String("o", ".", "directory to write the .tgz to")
	flag.Parse()
	if err := run(*dir, *appVersion, *out); err != nil {
		fmt.Fprintln(os.Stderr, "chartpkg:", err)
		os.Exit(1)
	}
}

func run(dir, appVersion, out string) error {
	c, err := loader.Load(dir)
	if err != nil {
		return err
	}
	if appVersion != "" {
		c.Metadata.AppVersion = appVersion
	}
	if err := c.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	path, err := chartutil.Save(c, out)
	if err != nil {
		return err
	}
	fmt.Printf("chart %s %s (appVersion %s): %s\n", c.Metadata.Name, c.Metadata.Version, c.Metadata.AppVersion, path)
	return nil
}
