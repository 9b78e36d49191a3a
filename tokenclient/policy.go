package tokenclient

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// policy holds the knobs of the pure lifetime decisions below.
type policy struct {
	refreshFraction float64       // refresh once this fraction of the life has passed
	jitter          float64       // refresh up to this fraction of that point earlier
	skew            time.Duration // a token counts as expired this long before its expiry
	margin          time.Duration // during an outage, serve until this long before expiry
	defaultLife     time.Duration // when the response has no expires_in and no JWT exp
}

// expiry decides when a token expires: issued+expires_in, or the JWT's exp
// when that is earlier (a server's clock or a proxy's cached answer must not
// make us trust a token for longer than it says itself), or exp alone when
// expires_in is missing, else issued+defaultLife. expiresIn <= 0 means absent.
func expiry(issued time.Time, expiresIn time.Duration, jwtExp time.Time, defaultLife time.Duration) time.Time {
	switch {
	case expiresIn > 0 && !jwtExp.IsZero() && jwtExp.Before(issued.Add(expiresIn)):
		return jwtExp
	case expiresIn > 0:
		return issued.Add(expiresIn)
	case !jwtExp.IsZero():
		return jwtExp
	default:
		return issued.Add(defaultLife)
	}
}

// schedule returns when a token issued at issued and expiring at exp stops
// being served (validUntil: exp minus the skew, the skew being at most a
// third of the life so short-lived tokens stay usable) and when a background
// refresh starts (refreshAt: the refresh fraction of the time it is served,
// moved earlier by up to jitter of it; u in [0,1) is the random draw).
// Taking the fraction of the served time rather than of the whole life keeps
// a window in which a failed refresh is retried while the cached token is
// still served, also for short lives (with the whole life, 2/3 of 60s was
// exactly the end of the 40s served). refreshAt is never after validUntil.
func schedule(issued, exp time.Time, p policy, u float64) (refreshAt, validUntil time.Time) {
	life := exp.Sub(issued)
	if life <= 0 {
		return issued, issued
	}
	skew := p.skew
	if skew > life/3 {
		skew = life / 3
	}
	validUntil = exp.Add(-skew)
	f := p.refreshFraction * (1 - p.jitter*u)
	if f < 0 {
		f = 0
	}
	refreshAt = issued.Add(time.Duration(float64(validUntil.Sub(issued)) * f))
	if refreshAt.After(validUntil) {
		refreshAt = validUntil
	}
	return refreshAt, validUntil
}

// outageUntil returns how long a token issued at issued and expiring at exp
// may be served while the token service is unavailable: until exp minus the
// outage margin. The margin is at most the skew schedule applies, so the
// outage horizon is never before the normal one.
func outageUntil(issued, exp time.Time, p policy) time.Time {
	life := exp.Sub(issued)
	if life <= 0 {
		return issued
	}
	skew := min(p.skew, life/3)
	return exp.Add(-min(p.margin, skew))
}

// valid reports whether a token may still be served at now.
func valid(now, validUntil time.Time) bool { return now.Before(validUntil) }

// dueForRefresh reports whether a background refresh should start at now.
func dueForRefresh(now, refreshAt time.Time) bool { return !now.Before(refreshAt) }

// jwtExpiry returns the exp claim of a JWT without verifying it (it is only a
// cross-check of expires_in), or the zero time when tok is not a JWT with exp.
func jwtExpiry(tok string) time.Time {
	parts := strings.SplitN(tok, ".", 4)
	if len(parts) != 3 || len(parts[1]) > 64<<10 {
		return time.Time{}
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(raw, &claims) != nil || claims.Exp == "" {
		return time.Time{}
	}
	f, err := claims.Exp.Float64()
	if err != nil || f <= 0 || f > 1e11 {
		return time.Time{}
	}
	return time.Unix(int64(f), 0)
}
