package tokenclient

import (
	"errors"
	"fmt"
	"testing"

	. "github.com/onsi/gomega"
)

// Errors are wrapped with the package prefix exactly once, decided by their
// identity, not by their text.
func TestIsOwn(t *testing.T) {
	g := NewWithT(t)
	g.Expect(isOwn(fmt.Errorf("%w: x", ErrBadResponse))).To(BeTrue())
	g.Expect(isOwn(&TokenError{StatusCode: 401})).To(BeTrue())
	g.Expect(isOwn(fmt.Errorf("wrapped: %w", &TokenError{StatusCode: 400}))).To(BeTrue())
	g.Expect(isOwn(errors.New("tokenclient: looks like ours but is not"))).To(BeFalse())
	g.Expect(isOwn(errors.New("dial tcp: refused"))).To(BeFalse())
}
