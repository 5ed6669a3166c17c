package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// decodeTagsPage reads one tags/list answer as a stream, calling fn for
// every tag of its "tags" array (with a zero digest) and, when the answer
// carries the digest map Google's registries add ("manifest": digest ->
// {"tag": [...]}), for every tag of that map with its digest. Nothing but
// the entry being read is held in memory, whatever the number of tags.
// Unknown fields are skipped; entries of the map whose key is not a digest
// are ignored.
func decodeTagsPage(r io.Reader, fn func(tag string, digest v1.Hash) error) error {
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return err
		}
		switch key {
		case "tags":
			if err := decodeTagArray(dec, func(t string) error { return fn(t, v1.Hash{}) }); err != nil {
				return fmt.Errorf("tags: %w", err)
			}
		case "manifest":
			if err := decodeDigestMap(dec, fn); err != nil {
				return fmt.Errorf("manifest: %w", err)
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return err
			}
		}
	}
	return expectDelim(dec, '}')
}

// decodeTagArray reads a JSON array of strings (or null) element by
// element.
func decodeTagArray(dec *json.Decoder, fn func(string) error) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("want an array, got %v", tok)
	}
	for dec.More() {
		var t string
		if err := dec.Decode(&t); err != nil {
			return err
		}
		if err := fn(t); err != nil {
			return err
		}
	}
	return expectDelim(dec, ']')
}

// decodeDigestMap reads the "manifest" object entry by entry.
func decodeDigestMap(dec *json.Decoder, fn func(tag string, digest v1.Hash) error) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("want an object, got %v", tok)
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return err
		}
		var entry struct {
			Tag []string `json:"tag"`
		}
		if err := dec.Decode(&entry); err != nil {
			return err
		}
		s, _ := key.(string)
		h, err := v1.NewHash(s)
		if err != nil {
			continue
		}
		for _, t := range entry.Tag {
			if err := fn(t, h); err != nil {
				return err
			}
		}
	}
	return expectDelim(dec, '}')
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("want %q, got %v", want, tok)
	}
	return nil
}
