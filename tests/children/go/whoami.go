// A real-SDK child: the AWS SDK for Go v2 (as Debian packages it) resolves credentials through
// its default chain, unchanged, and prints the provider and the identity it runs as:
// `method=<credentials source>` then `arn=<Arn>`.
//
// Built offline in GOPATH mode by scripts/test (GO111MODULE=off, GOPATH=...:/usr/share/gocode).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "error: %s: %v\n", what, err)
	os.Exit(1)
}

func main() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fail("loading the configuration", err)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		fail("retrieving credentials", err)
	}
	fmt.Printf("method=%s\n", creds.Source)
	var opts []func(*sts.Options)
	// Debian's SDK predates AWS_ENDPOINT_URL_STS: the test's STS is set here, as a user would.
	if url := os.Getenv("AWS_ENDPOINT_URL_STS"); url != "" {
		opts = append(opts, func(o *sts.Options) {
			o.EndpointResolver = sts.EndpointResolverFromURL(url)
		})
	}
	out, err := sts.NewFromConfig(cfg, opts...).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		fail("GetCallerIdentity", err)
	}
	fmt.Printf("arn=%s\n", aws.ToString(out.Arn))
}
