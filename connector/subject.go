package connector

import (
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"crypto/x509/pkix"
)

// Attribute is one "TYPE=value" element of a subject.
type Attribute struct {
	Type  string // upper-case short name ("CN", "O", …) or a dotted OID
	Value string
}

// RDN is one relative distinguished name: usually one attribute, several
// when joined with "+" ("OU=a+CN=b").
type RDN []Attribute

// Subject is a distinguished name in the order the connector wrote it. The
// CSR carries the RDNs in exactly this order.
type Subject []RDN

var attrOIDs = map[string]asn1.ObjectIdentifier{
	"CN":           {2, 5, 4, 3},
	"SERIALNUMBER": {2, 5, 4, 5},
	"C":            {2, 5, 4, 6},
	"L":            {2, 5, 4, 7},
	"ST":           {2, 5, 4, 8},
	"STREET":       {2, 5, 4, 9},
	"O":            {2, 5, 4, 10},
	"OU":           {2, 5, 4, 11},
	"POSTALCODE":   {2, 5, 4, 17},
	"DC":           {0, 9, 2342, 19200300, 100, 1, 25},
	"UID":          {0, 9, 2342, 19200300, 100, 1, 1},
	"EMAILADDRESS": {1, 2, 840, 113549, 1, 9, 1},
}

// aliases spelled differently in the wild.
var attrAliases = map[string]string{"S": "ST", "E": "EMAILADDRESS", "EMAIL": "EMAILADDRESS"}

// ParseSubject parses a subject such as "O=Org,OU=Unit,L=Waldorf,ST=BW,C=DE,CN=app"
// (RFC 4514 syntax: "," or ";" between RDNs, "+" inside a multi-valued RDN,
// backslash escapes "\," and "\2C", double-quoted values, spaces around
// separators ignored). Attribute types are the usual short names (CN, O, OU,
// L, ST, C, STREET, POSTALCODE, SERIALNUMBER, DC, UID, EMAILADDRESS) or
// dotted OIDs. The order is kept.
func ParseSubject(s string) (Subject, error) {
	p := subjectParser{s: s}
	sub, err := p.parse()
	if err != nil {
		return nil, fmt.Errorf("%w: subject %q: %v", ErrInvalidInput, s, err)
	}
	return sub, nil
}

type subjectParser struct {
	s   string
	pos int
}

func (p *subjectParser) skipSpaces() {
	for p.pos < len(p.s) && p.s[p.pos] == ' ' {
		p.pos++
	}
}

func (p *subjectParser) parse() (Subject, error) {
	if strings.TrimSpace(p.s) == "" {
		return nil, fmt.Errorf("empty")
	}
	var sub Subject
	var rdn RDN
	for {
		a, err := p.attribute()
		if err != nil {
			return nil, err
		}
		rdn = append(rdn, a)
		if p.pos >= len(p.s) {
			sub = append(sub, rdn)
			return sub, nil
		}
		switch p.s[p.pos] {
		case '+':
			p.pos++
		case ',', ';':
			p.pos++
			sub = append(sub, rdn)
			rdn = nil
		default:
			return nil, fmt.Errorf("unexpected %q at offset %d", p.s[p.pos], p.pos)
		}
	}
}

func (p *subjectParser) attribute() (Attribute, error) {
	p.skipSpaces()
	start := p.pos
	for p.pos < len(p.s) && p.s[p.pos] != '=' && p.s[p.pos] != ',' && p.s[p.pos] != ';' && p.s[p.pos] != '+' {
		p.pos++
	}
	if p.pos >= len(p.s) || p.s[p.pos] != '=' {
		return Attribute{}, fmt.Errorf("missing \"=\" after attribute type at offset %d", start)
	}
	typ, err := normalizeType(strings.TrimSpace(p.s[start:p.pos]))
	if err != nil {
		return Attribute{}, err
	}
	p.pos++ // '='
	p.skipSpaces()
	val, err := p.value()
	if err != nil {
		return Attribute{}, fmt.Errorf("%s: %v", typ, err)
	}
	if val == "" {
		return Attribute{}, fmt.Errorf("%s: empty value", typ)
	}
	if !utf8.ValidString(val) {
		return Attribute{}, fmt.Errorf("%s: value is not valid UTF-8", typ)
	}
	return Attribute{Type: typ, Value: val}, nil
}

func normalizeType(t string) (string, error) {
	if t == "" {
		return "", fmt.Errorf("empty attribute type")
	}
	u := strings.ToUpper(t)
	if a, ok := attrAliases[u]; ok {
		u = a
	}
	if _, ok := attrOIDs[u]; ok {
		return u, nil
	}
	if oid, ok := parseOID(t); ok {
		return oid.String(), nil
	}
	return "", fmt.Errorf("unknown attribute type %q", t)
}

func parseOID(s string) (asn1.ObjectIdentifier, bool) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "OID."), "oid.")
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, false
	}
	oid := make(asn1.ObjectIdentifier, 0, len(parts))
	for i, part := range parts {
		if part == "" || len(part) > 9 || (len(part) > 1 && part[0] == '0') {
			return nil, false
		}
		n := 0
		for _, c := range part {
			if c < '0' || c > '9' {
				return nil, false
			}
			n = n*10 + int(c-'0')
		}
		if (i == 0 && n > 2) || (i == 1 && oid[0] < 2 && n > 39) {
			return nil, false
		}
		oid = append(oid, n)
	}
	return oid, true
}

// value reads up to the next unescaped separator; trailing unescaped spaces
// are dropped.
func (p *subjectParser) value() (string, error) {
	if p.pos < len(p.s) && p.s[p.pos] == '"' {
		return p.quoted()
	}
	if p.pos < len(p.s) && p.s[p.pos] == '#' {
		return "", fmt.Errorf("hex-encoded (#…) values are not supported")
	}
	var b []byte
	keep := 0 // length of b up to the last escaped or non-space byte
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch c {
		case ',', ';', '+':
			return string(b[:keep]), nil
		case '"':
			return "", fmt.Errorf("unescaped '\"' at offset %d", p.pos)
		case '\\':
			r, n, err := unescape(p.s[p.pos:])
			if err != nil {
				return "", fmt.Errorf("at offset %d: %v", p.pos, err)
			}
			b = append(b, r)
			keep = len(b)
			p.pos += n
			continue
		}
		b = append(b, c)
		if c != ' ' {
			keep = len(b)
		}
		p.pos++
	}
	return string(b[:keep]), nil
}

func (p *subjectParser) quoted() (string, error) {
	start := p.pos
	p.pos++
	var b []byte
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch c {
		case '"':
			p.pos++
			p.skipSpaces()
			if p.pos < len(p.s) && !strings.ContainsRune(",;+", rune(p.s[p.pos])) {
				return "", fmt.Errorf("text after a quoted value at offset %d", p.pos)
			}
			return string(b), nil
		case '\\':
			r, n, err := unescape(p.s[p.pos:])
			if err != nil {
				return "", fmt.Errorf("at offset %d: %v", p.pos, err)
			}
			b = append(b, r)
			p.pos += n
			continue
		}
		b = append(b, c)
		p.pos++
	}
	return "", fmt.Errorf("unterminated quoted value starting at offset %d", start)
}

// unescape decodes "\c" or "\hh" at the start of s.
func unescape(s string) (byte, int, error) {
	if len(s) < 2 {
		return 0, 0, fmt.Errorf("dangling backslash")
	}
	if isHex(s[1]) {
		if len(s) < 3 || !isHex(s[2]) {
			return 0, 0, fmt.Errorf("bad hex escape")
		}
		v, _ := hex.DecodeString(s[1:3])
		return v[0], 3, nil
	}
	return s[1], 2, nil
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// String formats the subject in its order, escaping what RFC 4514 requires.
// ParseSubject(s.String()) returns s.
func (s Subject) String() string {
	var b strings.Builder
	for i, rdn := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, a := range rdn {
			if j > 0 {
				b.WriteByte('+')
			}
			b.WriteString(a.Type)
			b.WriteByte('=')
			b.WriteString(escapeValue(a.Value))
		}
	}
	return b.String()
}

func escapeValue(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == ',' || c == '+' || c == '"' || c == '\\' || c == '<' || c == '>' || c == ';' || c == '=':
			b.WriteByte('\\')
			b.WriteByte(c)
		case (c == ' ' && (i == 0 || i == len(v)-1)) || (c == '#' && i == 0):
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func oidOf(typ string) asn1.ObjectIdentifier {
	if oid, ok := attrOIDs[typ]; ok {
		return oid
	}
	oid, _ := parseOID(typ)
	return oid
}

// RDNSequence returns the subject for encoding, in its order.
func (s Subject) RDNSequence() pkix.RDNSequence {
	seq := make(pkix.RDNSequence, 0, len(s))
	for _, rdn := range s {
		set := make([]pkix.AttributeTypeAndValue, 0, len(rdn))
		for _, a := range rdn {
			set = append(set, pkix.AttributeTypeAndValue{Type: oidOf(a.Type), Value: a.Value})
		}
		seq = append(seq, set)
	}
	return seq
}

// DER returns the DER encoding of the subject (for a CSR's RawSubject).
func (s Subject) DER() ([]byte, error) {
	der, err := asn1.Marshal(s.RDNSequence())
	if err != nil {
		return nil, fmt.Errorf("%w: subject %q: %v", ErrInvalidInput, s.String(), err)
	}
	return der, nil
}

// Name returns the subject as a pkix.Name (which loses the order).
func (s Subject) Name() pkix.Name {
	var n pkix.Name
	n.FillFromRDNSequence(ptr(s.RDNSequence()))
	return n
}

func ptr[T any](v T) *T { return &v }

// attrKey is one attribute as a comparable value.
type attrKey struct {
	oid   string
	value string
}

func attrsOf(seq pkix.RDNSequence) ([]attrKey, bool) {
	var out []attrKey
	for _, rdn := range seq {
		for _, a := range rdn {
			v, ok := a.Value.(string)
			if !ok {
				return nil, false
			}
			out = append(out, attrKey{a.Type.String(), v})
		}
	}
	slices.SortFunc(out, func(x, y attrKey) int {
		if c := strings.Compare(x.oid, y.oid); c != 0 {
			return c
		}
		return strings.Compare(x.value, y.value)
	})
	return out, true
}

// Matches reports whether rawSubject (the DER subject of a certificate or
// CSR) carries the same attributes with the same values as s. The order is
// not compared: CAs commonly re-order a subject when they issue.
func (s Subject) Matches(rawSubject []byte) bool {
	seq, err := rdnSequence(rawSubject)
	if err != nil {
		return false
	}
	got, ok := attrsOf(seq)
	if !ok {
		return false
	}
	want, _ := attrsOf(s.RDNSequence())
	return slices.Equal(got, want)
}

func rdnSequence(raw []byte) (pkix.RDNSequence, error) {
	var seq pkix.RDNSequence
	rest, err := asn1.Unmarshal(raw, &seq)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("trailing data after the subject")
	}
	return seq, nil
}
