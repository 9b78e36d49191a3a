package mockauth

import "testing"

// StartTest is Start for a Go test: it fails the test when the mock does
// not start and closes it when the test ends.
//
//	srv := mockauth.StartTest(t, mockauth.Options{TokenTTL: time.Minute})
//	resp, err := srv.Client().PostForm(srv.Info().URL+"/oauth/token", form)
func StartTest(tb testing.TB, opts Options) *Server {
	tb.Helper()
	srv, err := Start(opts)
	if err != nil {
		tb.Fatalf("mockauth: %v", err)
	}
	tb.Cleanup(func() { _ = srv.Close() })
	return srv
}
