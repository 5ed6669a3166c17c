package attest_test

import (
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/internal/testenv"
	"github.com/imgpromoter/promoter/pkg/attest"
)

var (
	dig  = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a1", 32)}
	when = time.Date(2026, 11, 29, 18, 0, 0, 0, time.FixedZone("CET", 3600))
)

func marshal(t *testing.T, st attest.Statement, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	b, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func TestStatements(t *testing.T) {
	testenv.Golden(t, "sign.json", marshal(t, attest.Sign(dig), nil))
	st, err := attest.PromotionStatement(attest.PromotionInput{
		Source: "staging.example/team/app", Destination: "prod.example/app", Digest: dig,
		Tags: []string{"v1.1", "v1", "v1.1"}, Time: when, BuilderID: "https://github.com/imgpromoter/promoter@v1.0.0",
	})
	testenv.Golden(t, "promotion.json", marshal(t, st, err))
	st, err = attest.VerificationSummaryStatement(attest.SummaryInput{
		Destination: "prod.example/app", Digest: dig, Time: when, VerifierID: "https://github.com/imgpromoter/promoter@v1.0.0",
		Result: attest.PolicyResult{
			PolicyPath: "promotion-policy.yaml", PolicyDigest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0f", 32)},
			Satisfied: []string{"signedBy:keys/release.pub", "attestation:https://slsa.dev/provenance/v1"}, Passed: true,
		},
	})
	testenv.Golden(t, "vsa.json", marshal(t, st, err))
}

func TestStatementsNeedTheirFields(t *testing.T) {
	if _, err := attest.PromotionStatement(attest.PromotionInput{Digest: dig, BuilderID: "x"}); err == nil {
		t.Error("promotion record without destination accepted")
	}
	if _, err := attest.VerificationSummaryStatement(attest.SummaryInput{Destination: "d", Digest: dig, VerifierID: "x"}); err == nil {
		t.Error("verification summary without policy digest accepted")
	}
}
