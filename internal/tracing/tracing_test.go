package tracing

import (
	"context"
	"errors"
	"testing"

	. "github.com/onsi/gomega"
	"go.opentelemetry.io/otel/attribute"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestFromEnvAndPrecedence(t *testing.T) {
	file := Settings{Exporter: ExporterOTLP, Endpoint: "http://file:4318", Protocol: ProtocolGRPC, ServiceName: "from-file",
		Sampler: SamplerTraceIDRatio, SamplerArg: "0.5", ResourceAttributes: map[string]string{"a": "file", "b": "file"}}
	for _, tc := range []struct {
		name    string
		file    Settings
		env     map[string]string
		enabled bool
		check   func(g *WithT, s Settings)
	}{
		{name: "nothing set: off", enabled: false},
		{name: "an endpoint turns it on", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, enabled: true},
		{name: "the traces endpoint too", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, enabled: true},
		{name: "exporter otlp alone", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, enabled: true},
		{name: "file alone", file: file, enabled: true, check: func(g *WithT, s Settings) {
			g.Expect(s.Endpoint).To(Equal("http://file:4318"))
			g.Expect(s.endpointFromEnv).To(BeFalse())
		}},
		{name: "variables win key by key", file: file, enabled: true, env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
			"OTEL_SERVICE_NAME": "from-env", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01",
			"OTEL_RESOURCE_ATTRIBUTES": "b=env,c=%20x",
		}, check: func(g *WithT, s Settings) {
			g.Expect(s.Endpoint).To(Equal("http://env:4318"))
			g.Expect(s.endpointFromEnv).To(BeTrue())
			g.Expect(s.Protocol).To(Equal(ProtocolHTTP))
			g.Expect(s.ServiceName).To(Equal("from-env"))
			g.Expect(s.Sampler).To(Equal(SamplerParentTraceIDRatio))
			g.Expect(s.SamplerArg).To(Equal("0.01"))
			g.Expect(s.ResourceAttributes).To(Equal(map[string]string{"a": "file", "b": "env", "c": " x"}))
		}},
		{name: "none in the environment wins over the file", file: file, env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}, enabled: false},
		{name: "none in the file wins over the environment", file: Settings{Exporter: ExporterNone},
			env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318"}, enabled: false},
		{name: "OTEL_SDK_DISABLED wins", file: file, env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, enabled: false},
		{name: "disabled in the file wins", file: Settings{Disabled: true}, env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, enabled: false},
		{name: "OTEL_SDK_DISABLED=false changes nothing", env: map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, enabled: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			e, err := FromEnv(env(tc.env))
			g.Expect(err).NotTo(HaveOccurred())
			s := Resolve(tc.file, e)
			g.Expect(s.Enabled()).To(Equal(tc.enabled))
			if tc.check != nil {
				tc.check(g, s)
			}
		})
	}
}

func TestFromEnvRefusesBadValues(t *testing.T) {
	for _, tc := range []struct{ k, v, named string }{
		{"OTEL_SDK_DISABLED", "maybe", "OTEL_SDK_DISABLED"},
		{"OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x", "OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT"},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://user:pw@x:4318", "OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT"},
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL"},
		{"OTEL_TRACES_SAMPLER", "jaeger_remote", "OTEL_TRACES_SAMPLER"},
		{"OTEL_RESOURCE_ATTRIBUTES", "novalue", "OTEL_RESOURCE_ATTRIBUTES"},
	} {
		g := NewWithT(t)
		_, err := FromEnv(env(map[string]string{tc.k: tc.v}))
		g.Expect(err).To(MatchError(ContainSubstring(tc.named)), tc.k)
		g.Expect(err.Error()).NotTo(ContainSubstring("pw@"), "no credential echoed")
	}
	g := NewWithT(t)
	_, err := FromEnv(env(map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}))
	g.Expect(err).To(MatchError(ContainSubstring("OTEL_TRACES_SAMPLER_ARG")))
	g.Expect(Settings{Sampler: "sometimes"}.Check()).To(MatchError(HavePrefix("sampler: ")))
	g.Expect(Settings{Protocol: "udp"}.Check()).To(MatchError(HavePrefix("protocol: ")))
	g.Expect(Settings{Endpoint: "http://x/?k=v"}.Check()).To(MatchError(HavePrefix("endpoint: ")))
}

func TestResourceAndSampler(t *testing.T) {
	g := NewWithT(t)
	r, err := Settings{ResourceAttributes: map[string]string{"service.name": "attr", "deployment.environment": "prod"}}.resource("v1.2.3")
	g.Expect(err).NotTo(HaveOccurred())
	name, _ := r.Set().Value(attribute.Key("service.name"))
	ver, _ := r.Set().Value(attribute.Key("service.version"))
	g.Expect(name.AsString()).To(Equal("attr"))
	g.Expect(ver.AsString()).To(Equal("v1.2.3"))
	r, _ = Settings{ServiceName: "svc", ResourceAttributes: map[string]string{"service.name": "attr"}}.resource("")
	name, _ = r.Set().Value(attribute.Key("service.name"))
	g.Expect(name.AsString()).To(Equal("svc"), "OTEL_SERVICE_NAME wins over service.name")
	r, _ = Settings{}.resource("")
	name, _ = r.Set().Value(attribute.Key("service.name"))
	g.Expect(name.AsString()).To(Equal(DefaultServiceName))

	g.Expect(Settings{}.sampler().Description()).To(HavePrefix("ParentBased{root:AlwaysOnSampler"))
	g.Expect(Settings{Sampler: SamplerParentTraceIDRatio, SamplerArg: "0.01"}.sampler().Description()).To(ContainSubstring("TraceIDRatioBased{0.01}"))
	g.Expect(Settings{Sampler: SamplerAlwaysOff}.sampler().Description()).To(Equal("AlwaysOffSampler"))

	p, err := New(context.Background(), Settings{}, "", nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Enabled()).To(BeFalse(), "off unless an exporter is chosen")
	p, err = New(context.Background(), Settings{Exporter: ExporterOTLP, Endpoint: "http://127.0.0.1:1", Protocol: ProtocolGRPC}, "", nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Enabled()).To(BeTrue())
	g.Expect(p.Shutdown(context.Background())).To(Succeed())
}

// A problem of the tracing: block names its key as a value, not as text a
// caller has to cut apart.
func TestCheckNamesTheKey(t *testing.T) {
	g := NewWithT(t)
	for key, s := range map[string]Settings{
		"sampler":  {Sampler: "sometimes"},
		"protocol": {Protocol: "udp"},
		"endpoint": {Endpoint: "http://x/?k=v"},
		"exporter": {Exporter: "zipkin"},
	} {
		var ke *KeyError
		g.Expect(errors.As(s.Check(), &ke)).To(BeTrue(), key)
		g.Expect(ke.Key).To(Equal(key))
	}
}
