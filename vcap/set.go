package vcap

import (
	"fmt"
	"strings"
)

// Set is the bindings read from one source, in source order.
type Set struct {
	// Source is the source they came from ("VCAP_SERVICES", "file /x", "dir /bindings").
	Source string
	// Bindings in the order the source lists them (VCAP: by label, then array
	// order; directories: sorted by name).
	Bindings []*Binding
}

// Len returns the number of bindings.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.Bindings)
}

// Err returns the problems of every binding, or nil when all are usable.
func (s *Set) Err() error {
	var all []*Error
	for _, b := range s.Bindings {
		all = append(all, b.errs...)
	}
	switch len(all) {
	case 0:
		return nil
	case 1:
		return all[0]
	}
	return &MultiError{Errs: all}
}

// ByName returns the binding called name. ErrNotFound if none, ErrAmbiguous
// if the name is duplicated.
func (s *Set) ByName(name string) (*Binding, error) {
	var found []*Binding
	for _, b := range s.Bindings {
		if b.Name == name {
			found = append(found, b)
		}
	}
	return one(s, found, fmt.Sprintf("name %q", name))
}

// ByLabel returns the bindings with the given label (case-insensitive).
func (s *Set) ByLabel(label string) []*Binding {
	var out []*Binding
	for _, b := range s.Bindings {
		if strings.EqualFold(b.Label, label) {
			out = append(out, b)
		}
	}
	return out
}

// ByTag returns the bindings that carry tag (case-insensitive).
func (s *Set) ByTag(tag string) []*Binding {
	var out []*Binding
	for _, b := range s.Bindings {
		if b.HasTag(tag) {
			out = append(out, b)
		}
	}
	return out
}

// XSUAAPlanOrder is the order in which SAP's libraries prefer xsuaa plans
// when several xsuaa bindings exist; other plans are never chosen.
var XSUAAPlanOrder = []string{"application", "broker", "space", "default"}

// Select picks one binding:
//   - name != "": the binding with that name (any service);
//   - else the preferred xsuaa binding (see XSUAA);
//   - else the single identity (IAS) binding.
//
// It returns ErrNotFound or ErrAmbiguous (wrapped in *Error).
func (s *Set) Select(name string) (*Binding, error) {
	if name != "" {
		return s.ByName(name)
	}
	b, xerr := s.XSUAA()
	if xerr == nil {
		return b, nil
	}
	if ids := s.authOfKind(KindIdentity); len(ids) > 0 {
		return one(s, ids, "label identity")
	}
	return nil, xerr
}

// XSUAA returns the preferred xsuaa binding: the first binding (in source
// order) of the first plan in XSUAAPlanOrder. Bindings with other plans are
// never chosen, even when they are the only xsuaa binding — SAP's libraries
// behave the same; choose such a binding by name.
func (s *Set) XSUAA() (*Binding, error) {
	xs := s.authOfKind(KindXSUAA)
	for _, plan := range XSUAAPlanOrder {
		for _, b := range xs {
			if strings.EqualFold(b.Plan, plan) {
				return b, nil
			}
		}
	}
	msg := fmt.Sprintf("no xsuaa binding with plan %s", strings.Join(XSUAAPlanOrder, ", "))
	if len(xs) > 0 {
		skipped := make([]string, len(xs))
		for i, b := range xs {
			skipped[i] = fmt.Sprintf("%s has plan %q", b.Name, b.Plan)
		}
		msg += " (" + strings.Join(skipped, ", ") + "; choose one by name)"
	}
	return nil, &Error{Source: s.Source, Err: fmt.Errorf("%w: %s", ErrNotFound, msg)}
}

// Identity returns the single identity (IAS) binding.
func (s *Set) Identity() (*Binding, error) {
	return one(s, s.authOfKind(KindIdentity), "label identity")
}

func (s *Set) authOfKind(k ServiceKind) []*Binding {
	var out []*Binding
	for _, b := range s.Bindings {
		if b.Auth != nil && b.Auth.Kind == k {
			out = append(out, b)
		}
	}
	return out
}

func one(s *Set, found []*Binding, what string) (*Binding, error) {
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, &Error{Source: s.Source, Err: fmt.Errorf("%w: %s", ErrNotFound, what)}
	}
	names := make([]string, len(found))
	for i, b := range found {
		names[i] = b.Name
	}
	return nil, &Error{Source: s.Source, Err: fmt.Errorf("%w: %s (%s); choose one by name", ErrAmbiguous, what, strings.Join(names, ", "))}
}
