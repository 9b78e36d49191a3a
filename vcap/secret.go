package vcap

import (
	"crypto"
	"fmt"
	"log/slog"

	"github.com/credbroker/credbroker/internal/pemx"
)

// Mask is what every redacting type prints instead of its content.
const Mask = "[REDACTED]"

// Secret is a sensitive string (a client secret, a password, a key in text
// form). Every way of printing it — String, GoString, every fmt verb,
// MarshalJSON, MarshalText, slog — yields Mask. Reveal returns the text for
// the one place that must send it (a token request).
type Secret string

// Reveal returns the secret text. Call it only where the secret leaves the
// process on purpose, never to log or print it.
func (s Secret) Reveal() string { return string(s) }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s == "" }

// String returns Mask (or "" for an empty secret, so absence stays visible).
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Mask
}

// GoString returns a masked Go-syntax form.
func (s Secret) GoString() string { return "vcap.Secret(" + fmt.Sprintf("%q", s.String()) + ")" }

// Format prints the mask for every verb (%s %v %q %x %d …).
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	if verb == 'q' {
		_, _ = fmt.Fprintf(f, "%q", s.String())
		return
	}
	_, _ = f.Write([]byte(s.String()))
}

// MarshalJSON encodes the mask as a JSON string.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// MarshalText encodes the mask.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// LogValue makes slog print the mask.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// PrivateKey holds a parsed private key. Like Secret it prints only a mask;
// Signer returns the key for a tls.Certificate. A nil *PrivateKey means "no
// key" and is safe to call methods on.
type PrivateKey struct {
	signer crypto.Signer
	pem    Secret // normalised PKCS#8 PEM
	source string // where the key came from: "binding", "--key-file /x", "file /b/key"
}

// NewPrivateKey wraps a signer (RSA, ECDSA or Ed25519). source says where it came from.
func NewPrivateKey(signer crypto.Signer, source string) (*PrivateKey, error) {
	if signer == nil {
		return nil, &Error{Field: "key", Err: ErrNoKey}
	}
	p, err := pemx.EncodeKey(signer)
	if err != nil {
		return nil, &Error{Field: "key", Err: fmt.Errorf("%w: %v", ErrBadKey, err)}
	}
	return &PrivateKey{signer: signer, pem: Secret(p), source: source}, nil
}

// Signer returns the key itself (the Reveal of this type). Nil for a nil key.
func (k *PrivateKey) Signer() crypto.Signer {
	if k == nil {
		return nil
	}
	return k.signer
}

// Reveal is Signer, named like Secret.Reveal.
func (k *PrivateKey) Reveal() crypto.Signer { return k.Signer() }

// PEM returns the key as PKCS#8 PEM, behind Secret (for writing a key file or
// building a tls.Certificate with tls.X509KeyPair).
func (k *PrivateKey) PEM() Secret {
	if k == nil {
		return ""
	}
	return k.pem
}

// Public returns the public half (not sensitive).
func (k *PrivateKey) Public() crypto.PublicKey {
	if k == nil {
		return nil
	}
	return k.signer.Public()
}

// Source says where the key came from ("binding", "--key-file /path", "file /dir/key").
func (k *PrivateKey) Source() string {
	if k == nil {
		return ""
	}
	return k.source
}

func (k *PrivateKey) mask() string {
	if k == nil {
		return "<nil>"
	}
	return Mask
}

// String returns Mask.
func (k *PrivateKey) String() string { return k.mask() }

// GoString returns a masked Go-syntax form.
func (k *PrivateKey) GoString() string { return "&vcap.PrivateKey{" + k.mask() + "}" }

// Format prints the mask for every verb.
func (k *PrivateKey) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(k.GoString()))
		return
	}
	_, _ = f.Write([]byte(k.mask()))
}

// MarshalJSON encodes the mask.
func (k *PrivateKey) MarshalJSON() ([]byte, error) { return []byte(`"` + k.mask() + `"`), nil }

// MarshalText encodes the mask.
func (k *PrivateKey) MarshalText() ([]byte, error) { return []byte(k.mask()), nil }

// LogValue makes slog print the mask.
func (k *PrivateKey) LogValue() slog.Value { return slog.StringValue(k.mask()) }
