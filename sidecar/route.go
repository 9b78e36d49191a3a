package sidecar

import (
	"net"
	"net/url"
	"sort"
	"strings"
)

// splitRoute splits an escaped request path "/name/rest…" into the route
// name and the rest ("" or starting with "/"). ok is false for a path that
// does not start with "/" or has an empty first segment.
func splitRoute(escapedPath string) (name, rest string, ok bool) {
	if len(escapedPath) < 2 || escapedPath[0] != '/' {
		return "", "", false
	}
	p := escapedPath[1:]
	if i := strings.IndexByte(p, '/'); i >= 0 {
		name, rest = p[:i], p[i:]
	} else {
		name = p
	}
	return name, rest, name != ""
}

// hasDotSegment reports whether a decoded path has a "." or ".." segment
// (with "/" or "\" as separators). Such paths are refused instead of
// cleaned: /orders/../admin must never reach anything but a 403.
func hasDotSegment(p string) bool {
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' || p[i] == '\\' {
			seg := p[start:i]
			if seg == "." || seg == ".." {
				return true
			}
			start = i + 1
		}
	}
	return false
}

// joinPath appends a route's rest (decoded and escaped) to the upstream
// path. The result is never empty.
func joinPath(base, rest string) string {
	base = strings.TrimSuffix(base, "/")
	if base == "" && rest == "" {
		return "/"
	}
	if base == "" {
		return rest
	}
	if rest == "" {
		return base
	}
	return base + rest
}

// effectivePort is u's port, or the scheme's default.
func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// router finds the route of a request.
type router struct {
	byName map[string]*route
	// byHost lists, per lower-case upstream host name, the routes whose
	// upstream is on that host, longest upstream path first.
	byHost map[string][]*route
}

func newRouter(routes []*route) *router {
	rt := &router{byName: map[string]*route{}, byHost: map[string][]*route{}}
	for _, r := range routes {
		rt.byName[r.name] = r
		if r.dest != nil {
			continue // no fixed upstream: not reachable in forward-proxy mode
		}
		h := strings.ToLower(r.target.Hostname())
		rt.byHost[h] = append(rt.byHost[h], r)
	}
	for _, list := range rt.byHost {
		sort.SliceStable(list, func(i, j int) bool { return len(list[i].basePath) > len(list[j].basePath) })
	}
	return rt
}

// byPath returns the route named by the first segment of an escaped path.
func (rt *router) byPath(escapedPath string) (*route, string) {
	name, rest, ok := splitRoute(escapedPath)
	if !ok {
		return nil, ""
	}
	r := rt.byName[name]
	return r, rest
}

// forward returns the route for an absolute-form http:// request URL (the
// app uses credbroker as its HTTP proxy). The host must be a route's upstream
// host; the port, when the app gives one other than 80, must be the
// upstream's; the path must lie under the upstream's path.
func (rt *router) forward(u *url.URL) *route {
	host, port := u.Host, ""
	if h, p, err := net.SplitHostPort(u.Host); err == nil {
		host, port = h, p
	}
	list := rt.byHost[strings.ToLower(host)]
	for _, r := range list {
		if port != "" && port != "80" && port != r.port {
			continue
		}
		if underPath(u.Path, r.basePath) {
			return r
		}
	}
	return nil
}

// underPath reports whether p is base or below it, segment-wise.
func underPath(p, base string) bool {
	if base == "" {
		return true
	}
	if !strings.HasPrefix(p, base) {
		return false
	}
	return len(p) == len(base) || p[len(base)] == '/'
}
