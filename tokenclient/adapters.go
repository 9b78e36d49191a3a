package tokenclient

import (
	"context"
	"net/http"

	"golang.org/x/oauth2"
)

// TokenSource adapts the client to oauth2.TokenSource for code that wants
// one. oauth2.TokenSource.Token takes no context, so ctx (given here, as
// oauth2.Config.TokenSource does) bounds every call; prefer Client.Token.
// The source is safe for concurrent use and caches through the client.
func (c *Client) TokenSource(ctx context.Context, req Request) oauth2.TokenSource {
	return &tokenSource{ctx: ctx, c: c, req: req}
}

type tokenSource struct {
	ctx context.Context // the edge adapter's context, as oauth2 does it
	c   *Client
	req Request
}

func (s *tokenSource) Token() (*oauth2.Token, error) {
	t, err := s.c.Token(s.ctx, s.req)
	if err != nil {
		return nil, err
	}
	return &oauth2.Token{
		AccessToken:  t.AccessToken,
		TokenType:    t.TokenType,
		RefreshToken: t.RefreshToken,
		Expiry:       t.Expiry,
		ExpiresIn:    int64(t.ExpiresIn.Seconds()),
	}, nil
}

// Transport returns a RoundTripper that sets "Authorization: Bearer <token>"
// on each request, with a token for req from the client, and sends it with
// base (http.DefaultTransport when nil). The request's context bounds the
// token lookup. The outgoing request is a clone; the caller's is not
// modified. It is safe for concurrent use.
func (c *Client) Transport(base http.RoundTripper, req Request) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{c: c, base: base, req: req}
}

type transport struct {
	c    *Client
	base http.RoundTripper
	req  Request
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := t.c.Token(r.Context(), t.req)
	if err != nil {
		if r.Body != nil {
			_ = r.Body.Close() // RoundTrip must close the body, even on errors
		}
		return nil, err
	}
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	return t.base.RoundTrip(r2)
}
