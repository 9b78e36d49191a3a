package destination

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// UserInfo is what the cache reads from a user token. The token's
// signature is not checked here (the Destination service checks it); the
// cache therefore never serves an entry to a token other than the one that
// fetched it (see Cache).
type UserInfo struct {
	// Key is issuer + zone + user claim, "" when the token names no user
	// (the result is then cached for that exact token only).
	Key string
	// Expiry is the token's exp (zero when absent).
	Expiry time.Time
}

// maxUserToken bounds the user token the cache decodes.
const maxUserToken = 16 << 10

// ParseUserToken reads the claims that key the cache. It returns ok false
// for text that is not a JWT with a JSON payload.
func ParseUserToken(token string) (UserInfo, bool) {
	if len(token) > maxUserToken {
		return UserInfo{}, false
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return UserInfo{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return UserInfo{}, false
	}
	var c struct {
		Iss      string  `json:"iss"`
		Zid      string  `json:"zid"`
		AppTID   string  `json:"app_tid"`
		ZoneUUID string  `json:"zone_uuid"`
		UserID   string  `json:"user_id"`
		UserUUID string  `json:"user_uuid"`
		Sub      string  `json:"sub"`
		Exp      float64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return UserInfo{}, false
	}
	var info UserInfo
	if c.Exp > 0 {
		info.Expiry = time.Unix(int64(c.Exp), 0)
	}
	var zone, user, flavor string
	switch {
	case c.UserUUID != "" || (c.Zid == "" && (c.AppTID != "" || c.ZoneUUID != "")):
		// IAS
		flavor, zone, user = "ias", c.AppTID, c.UserUUID
		if zone == "" {
			zone = c.ZoneUUID
		}
		if user == "" {
			user = c.Sub
		}
	default:
		flavor, zone, user = "xsuaa", c.Zid, c.UserID
		if user == "" {
			user = c.Sub
		}
	}
	if user != "" && c.Iss != "" {
		// Length-prefixed so that no two different triples give one key.
		info.Key = flavor + "|" + lp(c.Iss) + lp(zone) + lp(user)
	}
	return info, true
}

func lp(s string) string {
	return itoa(len(s)) + ":" + s
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
