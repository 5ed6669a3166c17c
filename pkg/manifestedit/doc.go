// Package manifestedit changes promoter manifests as text: AddToList and Add
// grow a thin project's images.yaml with digests and tags (Add looks them up
// in the staging registry first), Format rewrites images lists in canonical
// form.
//
// Neither reads the YAML into a structure and writes it back out: they find
// their way with the node positions of go.yaml.in/yaml/v3 and edit the
// bytes, so comments, blank lines, line endings and the way existing entries
// are written survive. Each checks its result by reading it back before it
// is written: an edit that would change anything else than what was asked
// is an error, never a silent loss. docs/manifest-editing.md describes the
// behaviour and the canonical form.
package manifestedit
