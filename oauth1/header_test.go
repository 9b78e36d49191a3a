package oauth1

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestParseAuthorization(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]string
		err      error
	}{
		{"simple", `OAuth oauth_consumer_key="k", oauth_nonce="n"`, map[string]string{"oauth_consumer_key": "k", "oauth_nonce": "n"}, nil},
		{"scheme any case, tabs, no spaces", "oauth realm=\"R\",\toauth_nonce=\"a%20b\",oauth_x=\"\"", map[string]string{"realm": "R", "oauth_nonce": "a b", "oauth_x": ""}, nil},
		{"plus stays plus", `OAuth oauth_signature="a+b%3D"`, map[string]string{"oauth_signature": "a+b="}, nil},
		{"encoded name", `OAuth oauth%5Fnonce="n"`, map[string]string{"oauth_nonce": "n"}, nil},
		{"trailing spaces", `OAuth oauth_nonce="n"   `, map[string]string{"oauth_nonce": "n"}, nil},
		{"empty", ``, nil, ErrNoCredentials},
		{"bearer", `Bearer eyJhbGciOi`, nil, ErrNoCredentials},
		{"basic", `Basic dXNlcjpwYXNz`, nil, ErrNoCredentials},
		{"scheme only", `OAuth`, nil, ErrMalformed},
		{"scheme and spaces", `OAuth   `, nil, ErrMalformed},
		{"duplicate", `OAuth oauth_nonce="a", oauth_nonce="a"`, nil, ErrMalformed},
		{"duplicate after decoding", `OAuth oauth_nonce="a", oauth%5Fnonce="b"`, nil, ErrMalformed},
		{"unquoted", `OAuth oauth_nonce=abc`, nil, ErrMalformed},
		{"single quotes", `OAuth oauth_nonce='abc'`, nil, ErrMalformed},
		{"unterminated", `OAuth oauth_nonce="abc`, nil, ErrMalformed},
		{"backslash", `OAuth oauth_nonce="a\"b"`, nil, ErrMalformed},
		{"junk after value", `OAuth oauth_nonce="a"b, oauth_x="c"`, nil, ErrMalformed},
		{"missing comma", `OAuth oauth_nonce="a" oauth_x="c"`, nil, ErrMalformed},
		{"double comma", `OAuth oauth_nonce="a",, oauth_x="c"`, nil, ErrMalformed},
		{"trailing comma", `OAuth oauth_nonce="a",`, nil, ErrMalformed},
		{"no name", `OAuth ="a"`, nil, ErrMalformed},
		{"no equals", `OAuth oauth_nonce`, nil, ErrMalformed},
		{"not oauth_", `OAuth foo="a"`, nil, ErrMalformed},
		{"bad escape in value", `OAuth oauth_nonce="%4"`, nil, ErrMalformed},
		{"bad escape in value 2", `OAuth oauth_nonce="%zz"`, nil, ErrMalformed},
		{"bad name char", `OAuth oauth nonce="a"`, nil, ErrMalformed},
		{"too long", `OAuth oauth_nonce="` + strings.Repeat("a", MaxAuthorizationLen) + `"`, nil, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := ParseAuthorization(tc.in)
			if tc.err != nil {
				g.Expect(err).To(MatchError(tc.err))
				g.Expect(got).To(BeNil())
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

func TestAuthorizationFormatParses(t *testing.T) {
	g := NewWithT(t)
	in := []param{{"realm", "My Realm"}, {"oauth_nonce", `"quoted", \ and, commas=`}, {"oauth_x", "☃"}}
	h := string(appendAuthorization(nil, in))
	got, err := ParseAuthorization(h)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(map[string]string{"realm": "My Realm", "oauth_nonce": `"quoted", \ and, commas=`, "oauth_x": "☃"}))
}
