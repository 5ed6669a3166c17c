// Package sign signs promoted images the way `cosign sign` v3 does, so that
// the real cosign CLI (and anything built on sigstore-go) verifies them:
// an in-toto statement in a DSSE envelope inside a sigstore bundle v0.3,
// attached to the image as an OCI referrer. It also writes cosign's legacy
// `.sig` simple-signing tag for readers that still need it, and signs
// attestations (see package attest) the same way.
//
// Signing material comes from a Signer: a private key (a cosign key file or
// any KeySigner, such as a KMS key) or keyless (an OIDC identity token
// exchanged with a Fulcio instance for a short-lived certificate). Entries are
// logged in a Rekor instance unless the transparency log is explicitly turned
// off for key-based signing.
package sign
