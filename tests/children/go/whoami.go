// A real-SDK child: the AWS SDK for Go v2 (as Debian packages it) resolves credentials through
// its default chain, unchanged, and prints the provider and the identity it runs as:
// `method=<credentials source>` then `arn=<Arn>`.
//
// Built offline in GOPATH mode by scripts/test (GO111MODULE=off, GOPATH=...:/usr/share/gocode).
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
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
	// Debian's SDK predates aws-sdk-go-v2#2949 (January 2025), which retries net.ErrClosed by
	// default: a read on a connection net/http closed itself, seen here once against moto
	// ("use of closed network connection" in GetCallerIdentity's 200 body). This is the
	// STS call only; the credentials come from the SDK's default chain, unchanged.
	opts := []func(*sts.Options){func(o *sts.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			closed := retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
				if errors.Is(err, net.ErrClosed) {
					return aws.TrueTernary
				}
				return aws.UnknownTernary
			})
			so.Retryables = append([]retry.IsErrorRetryable{closed}, so.Retryables...)
		})
	}}
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
