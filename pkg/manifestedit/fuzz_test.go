package manifestedit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func seedInputs(f *testing.F) {
	for _, dir := range []string{"add", "fmt"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.yaml"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
}

// FuzzFormat: Format either refuses with an *Error or gives a file that
// formats to itself (it checks internally that content and comments stay).
func FuzzFormat(f *testing.F) {
	seedInputs(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Format("f.yaml", data)
		if err != nil {
			var ee *Error
			if !errors.As(err, &ee) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		again, err := Format("f.yaml", out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not stable (%v):\n%q\n%q", err, out, again)
		}
	})
}

// FuzzAdd: AddToList either refuses (*Error, *RefusedError) or gives a file
// that says what it said plus the additions (checked internally), and adding
// again changes nothing.
func FuzzAdd(f *testing.F) {
	seedInputs(f)
	adds := []Addition{{Digest: hash("a"), Tags: []string{"v1.0.0", "1.0"}}, {Digest: hash("9")}}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, image := range []string{"controller", "app"} {
			out, _, err := AddToList("f.yaml", data, image, adds)
			if err != nil {
				var ee *Error
				var re *RefusedError
				if !errors.As(err, &ee) && !errors.As(err, &re) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				continue
			}
			again, _, err := AddToList("f.yaml", out, image, adds)
			if err != nil || !bytes.Equal(again, out) {
				t.Fatalf("adding again: %v\n%q\n%q", err, out, again)
			}
		}
	})
}
