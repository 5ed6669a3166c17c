package plan

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgpromoter/promoter/pkg/edge"
)

// agreeAcrossMirrors makes mirrors agree: a tag that one destination of a
// manifest entry already holds on another digest is refused on every
// destination of that entry in this run, with a reason naming the mirror
// that holds the other digest. Users may be served any mirror, so setting
// the tag on the others would publish one tag with two digests. Edges that
// failed for a registry error are not conflicts and block nothing (the next
// run tries them again). It runs once every destination is planned.
func agreeAcrossMirrors(records []*Record) {
	type key struct {
		group *edge.Group
		tag   string
	}
	type holder struct {
		dest   string
		digest v1.Hash
	}
	conflicts := map[key][]holder{}
	for _, r := range records {
		for _, d := range r.Edges {
			if d.Class == Conflict && d.Tag != "" {
				k := key{r.Group, d.Tag}
				conflicts[k] = append(conflicts[k], holder{r.Dest.Name(), d.Existing})
			}
		}
	}
	if len(conflicts) == 0 {
		return
	}
	for _, r := range records {
		for i := range r.Edges {
			d := &r.Edges[i]
			if d.Class != Copy && d.Class != TagOnly || d.Tag == "" {
				continue
			}
			hs := conflicts[key{r.Group, d.Tag}]
			if len(hs) == 0 {
				continue
			}
			slices.SortFunc(hs, func(x, y holder) int { return cmp.Compare(x.dest, y.dest) })
			where := make([]string, len(hs))
			for j, h := range hs {
				where[j] = fmt.Sprintf("%s (at %s)", h.dest, h.digest)
			}
			d.Class, d.Existing = Conflict, hs[0].digest
			d.Reason = fmt.Sprintf("tag %s already points at another digest on the mirror %s; mirrors must agree, so it is set on no mirror of this manifest",
				d.Tag, strings.Join(where, ", "))
		}
	}
}
