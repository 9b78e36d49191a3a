package tokenclient

import (
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// quickRequests are requests of the shapes quickFind serves, and some it
// leaves to lookup, with strings around the inline words' bounds (7, 8,
// 9, 12, 16, 17 bytes) and keys that differ in one byte anywhere.
func quickRequests() map[string]struct {
	r  Request
	fp string
} {
	out := map[string]struct {
		r  Request
		fp string
	}{}
	add := func(name string, r Request, fp string) {
		out[name] = struct {
			r  Request
			fp string
		}{r, fp}
	}
	add("none", Request{}, "")
	add("fp", Request{}, strings.Repeat("f", 64))
	add("scopes", Request{Scopes: []string{"orders.read", "orders.write"}}, "")
	add("scopes-4", Request{Scopes: []string{"aaaaaaaa", "bbbbbbbb", "cccccccc", "dddddddd"}}, "")
	add("scopes-5", Request{Scopes: []string{"aaaaaaaa", "bbbbbbbb", "cccccccc", "dddddddd", "eeeeeeee"}}, "")
	add("tenant-scopes", Request{Tenant: "subscriber-1", Scopes: []string{"orders.read", "orders.write"}}, "")
	add("zone-scopes", Request{ZoneID: "subscriber-1", Scopes: []string{"orders.read", "orders.write"}}, "")
	add("tenant-scopes-fp", Request{Tenant: "subscriber-1", Scopes: []string{"orders.read"}}, strings.Repeat("f", 64))
	add("tenant-resource", Request{Tenant: "subscriber-1", Resource: "urn:sap:identity:application:provider:name:x"}, "")
	add("password", Request{Grant: GrantPassword, Username: "alice", Password: "pw"}, "")
	for _, n := range []int{7, 8, 9, 12, 16, 17} {
		a := strings.Repeat("x", n)
		add(fmt.Sprintf("tenant-%d", n), Request{Tenant: a}, "")
		add(fmt.Sprintf("zone-%d", n), Request{ZoneID: a}, "")
		add(fmt.Sprintf("scope-%d", n), Request{Scopes: []string{"aaaaaaaa", a}}, "")
		add(fmt.Sprintf("tenant-scope-%d", n), Request{Tenant: "subscriber-1", Scopes: []string{a}}, "")
		for _, at := range []int{0, n / 2, n - 1} {
			b := []byte(a)
			b[at] = 'y'
			add(fmt.Sprintf("tenant-%d/%d", n, at), Request{Tenant: string(b)}, "")
			add(fmt.Sprintf("scope-%d/%d", n, at), Request{Scopes: []string{"aaaaaaaa", string(b)}}, "")
			add(fmt.Sprintf("tenant-scope-%d/%d", n, at), Request{Tenant: "subscriber-1", Scopes: []string{string(b)}}, "")
		}
	}
	return out
}

func cloneRequest(r Request) Request {
	r.Tenant, r.ZoneID, r.Username = strings.Clone(r.Tenant), strings.Clone(r.ZoneID), strings.Clone(r.Username)
	r.Resource, r.AppTID = strings.Clone(r.Resource), strings.Clone(r.AppTID)
	r.Scopes = cloneStrings(r.Scopes)
	return r
}

// quickFind tells keys apart like find: with the entry of request a in
// request b's near slot (as if their hashes were one), b finds it only
// when a and b are the same key, and only when b is of the shape quickFind
// serves. Requests are fresh copies, as quickFind's callers pass.
func TestQuickFindMatchesEveryPart(t *testing.T) {
	reqs := quickRequests()
	c := Client{prefix: 7, seed: [2]uint64{0x243f6a8885a308d3, 0x13198a2e03707344}}
	served := 0
	for a, ra := range reqs {
		ka := key{fp: ra.fp}
		c.fill(&ra.r, &ka)
		id := newIdentity(&ra.r, &ka)
		for b, rb := range reqs {
			kb := key{fp: rb.fp}
			c.fill(&rb.r, &kb)
			h := kb.h
			e := &entry{hash: h, id: id}
			req, fp := cloneRequest(rb.r), strings.Clone(rb.fp)
			slot := &c.near[h>>24%nearSize]
			slot.Store(e)
			got := c.quickFind(&req, fp)
			slot.Store(nil)
			want := a == b && quickServes(rb.r, rb.fp)
			if want {
				served++
			}
			if (got != nil) != want {
				t.Errorf("entry %s, request %s: found %v, want %v", a, b, got != nil, want)
			}
			if got := c.quickFind(&req, fp); got != nil {
				t.Errorf("entry %s, request %s: found an entry in an empty near table", a, b)
			}
		}
	}
	if served < 20 {
		t.Fatalf("only %d requests of the shape quickFind serves", served)
	}
}

// quickServes is whether quickFind can find r's entry (else it leaves r
// to lookup): client credentials with a tenant or a zone and canonical
// scopes, up to four strings in all of 8 to 16 bytes, no fingerprint.
func quickServes(r Request, fp string) bool {
	if r.Grant != "" || r.Username != "" || r.Resource != "" || r.AppTID != "" || fp != "" ||
		r.Tenant != "" && r.ZoneID != "" {
		return false
	}
	strs := append([]string{r.Tenant + r.ZoneID}, r.Scopes...)
	if r.Tenant+r.ZoneID == "" {
		strs = strs[1:]
	}
	for _, s := range strs {
		if len(s) < 8 || len(s) > 16 {
			return false
		}
	}
	return len(strs) > 0 && len(strs) <= quickMax
}

// quickFind computes fill's hash: for every request it serves, a fresh
// copy finds the entry Token made once Token has remembered it (a copy's
// first call goes through lookup), with no fetch; scopes out of order are
// left to lookup, which finds the same entry.
func TestQuickFindFindsTokensEntry(t *testing.T) {
	g := NewWithT(t)
	as, c := newTenantClient(t)
	n, served := 0, 0
	for name, q := range quickRequests() {
		if q.fp != "" || q.r.ZoneID != "" || q.r.Grant != "" {
			continue // the fake server's client has no certificate; zones are checked elsewhere
		}
		first, err := c.Token(bg, q.r)
		g.Expect(err).NotTo(HaveOccurred(), name)
		n++
		e, err := c.lookup(&q.r, "")
		g.Expect(err).NotTo(HaveOccurred(), name)
		slot := &c.near[e.hash>>24%nearSize]
		slot.Store(nil)
		cp := cloneRequest(q.r)
		g.Expect(c.quickFind(&cp, "")).To(BeNil(), name)
		g.Expect(c.Token(bg, cp)).To(BeIdenticalTo(first), name)
		if !quickServes(q.r, "") {
			g.Expect(slot.Load()).To(BeNil(), "%s is not for the near table", name)
			continue
		}
		served++
		g.Expect(slot.Load()).To(BeIdenticalTo(e), "%s remembered", name)
		g.Expect(c.quickFind(&cp, "")).To(BeIdenticalTo(e), "%s through the near table", name)
		if len(cp.Scopes) == 2 {
			cp.Scopes[0], cp.Scopes[1] = cp.Scopes[1], cp.Scopes[0]
			g.Expect(c.quickFind(&cp, "")).To(BeNil(), "%s with its scopes out of order", name)
			g.Expect(c.Token(bg, cp)).To(BeIdenticalTo(first), "%s with its scopes out of order", name)
		}
	}
	g.Expect(served).To(BeNumerically(">", 10))
	g.Expect(as.count()).To(Equal(n), "one fetch per key")
}

// An entry that was removed is not served from the near table: a copy of
// its request's strings makes a new entry and fetches, also when the near
// slot still held the removed entry (a remove racing with a quickFind that
// stored it again).
func TestNearTableDropsRemovedEntries(t *testing.T) {
	g := NewWithT(t)
	as, c := newTenantClient(t)
	r := Request{Tenant: "subscriber-1", Scopes: []string{"orders.read", "orders.write"}}
	first, err := c.Token(bg, r)
	g.Expect(err).NotTo(HaveOccurred())
	cp := cloneRequest(r)
	g.Expect(c.Token(bg, cp)).To(BeIdenticalTo(first))
	e, err := c.lookup(&r, "")
	g.Expect(err).NotTo(HaveOccurred())
	slot := &c.near[e.hash>>24%nearSize]
	g.Expect(slot.Load()).To(BeIdenticalTo(e), "the copy's find put the entry in the near table")

	c.remove(e)
	g.Expect(slot.Load()).To(BeNil())
	slot.Store(e)
	tok, err := c.Token(bg, cloneRequest(r))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok).NotTo(BeIdenticalTo(first), "served the removed entry's token")
	g.Expect(as.count()).To(Equal(2))
}

// mayBeSameStrings is never false where sameStrings is true (else a caller
// with the same strings would never be put in the front table): for every
// request, against the entry made from its very strings, and against
// entries of other keys.
func TestMayBeSameStringsCoversSameStrings(t *testing.T) {
	var c Client
	reqs := quickRequests()
	empty := Request{Scopes: []string{""}, Tenant: ""}
	reqs["empty-scope"] = struct {
		r  Request
		fp string
	}{empty, ""}
	same := 0
	for a, ra := range reqs {
		k := key{fp: ra.fp}
		c.fill(&ra.r, &k)
		e := &entry{id: newIdentity(&ra.r, &k)}
		// newIdentity copies the scopes: the entry's own strings are its identity's.
		own := ra.r
		own.Scopes = e.id.scopes
		for b, rb := range reqs {
			for _, r := range []Request{rb.r, own} {
				if e.sameStrings(&r, rb.fp) {
					same++
					if !e.mayBeSameStrings(&r) {
						t.Errorf("entry %s, request %s: sameStrings but not mayBeSameStrings", a, b)
					}
				}
			}
		}
	}
	if same < len(reqs) {
		t.Fatalf("only %d pairs were the same strings, want at least %d", same, len(reqs))
	}
}

// Only entries quickFind can serve are remembered in the near table: not
// those whose key has a user, resource, app_tid or another grant, even
// when their strings fit inline.
func TestRememberKeepsOnlyWhatQuickFindServes(t *testing.T) {
	c := Client{prefix: 7, seed: [2]uint64{0x243f6a8885a308d3, 0x13198a2e03707344}}
	for name, q := range quickRequests() {
		for _, r := range []Request{q.r, {Tenant: "subscriber-1", Resource: "resource-abc"}, {Tenant: "subscriber-1", AppTID: "app-tid-0001"}} {
			k := key{fp: q.fp}
			c.fill(&r, &k)
			e := &entry{hash: k.h, id: newIdentity(&r, &k)}
			slot := &c.near[e.hash>>24%nearSize]
			slot.Store(nil)
			c.remember(e)
			if got, want := slot.Load() != nil, quickServes(r, q.fp); got != want {
				t.Errorf("%s (%+v): remembered %v, want %v", name, r.Scopes, got, want)
			}
		}
	}
}
