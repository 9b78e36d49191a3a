package sidecar

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestPersistConfig(t *testing.T) {
	g := NewWithT(t)
	cfg, err := ParseConfig([]byte(`
certificates:
  - name: connector
    dir: /var/run/credbroker/connector
    pairing_url_file: /etc/p
    renew: true
    persist: {kubernetes_secret: {name: credbroker-identity, namespace: apps, poll_interval: 5s}}
`), "test")
	g.Expect(err).NotTo(HaveOccurred())
	ks := cfg.Certificates[0].Persist.KubernetesSecret
	g.Expect(*ks).To(Equal(KubernetesSecret{Name: "credbroker-identity", Namespace: "apps", PollInterval: 5 * time.Second,
		RequestTimeout: DefaultPersistRequestTimeout, LockDuration: DefaultPersistLockDuration, StartTimeout: DefaultPersistStartTimeout,
		MaxResponseBytes: DefaultPersistMaxResponseBytes}))

	for yaml, want := range map[string]string{
		`{name: c, binding: b, persist: {kubernetes_secret: {name: s}}}`:                      "needs dir",
		`{name: c, dir: /d, runtime_dir: /r, persist: {kubernetes_secret: {name: s}}}`:        "not with runtime_dir",
		`{name: c, dir: /d, persist: {}}`:                                                     "kubernetes_secret",
		`{name: c, dir: /d, persist: {kubernetes_secret: {}}}`:                                "certificates[0].persist.kubernetes_secret.name",
		`{name: c, dir: /d, persist: {kubernetes_secret: {name: "../x"}}}`:                    "DNS subdomain",
		`{name: c, dir: /d, persist: {kubernetes_secret: {name: s, namespace: "A"}}}`:         "DNS label",
		`{name: c, dir: /d, persist: {kubernetes_secret: {name: s, poll_interval: -1s}}}`:     "poll_interval",
		`{name: c, dir: /d, persist: {kubernetes_secret: {name: s, lock_duration: 5s}}}`:      "at least 1m0s",
		`{name: c, dir: /d, persist: {kubernetes_secret: {name: s, max_response_bytes: 10}}}`: "at least 4096",
		`{name: c, dir: /d, persist: {kubernetes_secret: {name: s, unknown_key: 1}}}`:         "unknown_key",
	} {
		_, err := ParseConfig([]byte("certificates:\n  - "+yaml+"\n"), "test")
		g.Expect(err).To(MatchError(ContainSubstring(want)), yaml)
	}
}
