package vcap_test

import (
	"context"
	"fmt"

	"github.com/credbroker/credbroker/vcap"
)

func Example() {
	// In a program, cmd passes os.Getenv("VCAP_SERVICES") and friends.
	src := vcap.Sources{VCAPServices: `{
	  "xsuaa": [{
	    "name": "my-xsuaa", "label": "xsuaa", "plan": "application",
	    "credentials": {
	      "clientid": "sb-app!t1", "clientsecret": "s3cr3t",
	      "credential-type": "binding-secret",
	      "url": "https://provider.authentication.eu10.hana.ondemand.com"
	    }
	  }]
	}`}
	set, err := vcap.Load(context.Background(), src)
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := set.Select("") // the xsuaa binding by plan order
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(b.Name, b.Source, b.Auth.Auth, b.Auth.TokenURL)
	fmt.Println("secret prints as", b.Auth.ClientSecret, "problems:", len(b.Problems))
	// Output:
	// my-xsuaa VCAP_SERVICES secret https://provider.authentication.eu10.hana.ondemand.com/oauth/token
	// secret prints as [REDACTED] problems: 0
}

func ExampleSecret() {
	s := vcap.Secret("hunter2")
	fmt.Printf("%v %s %q %x %#v\n", s, s, s, s, s)
	// Output: [REDACTED] [REDACTED] "[REDACTED]" [REDACTED] vcap.Secret("[REDACTED]")
}
