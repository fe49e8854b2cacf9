package messages

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzWalk checks the walker against encoding/json's decoder on every valid JSON
// input: the same members (unescaped keys, raw values) or elements, in order, and the
// same verdict on whether it is an object or an array.
// Run it with: go test ./messages -run '^$' -fuzz FuzzWalk
func FuzzWalk(f *testing.F) {
	for _, seed := range []string{
		`{"id":"a","params":{"username":"u","list":[1,"x",{"k":[]}]}}`,
		` { "a\u0062" : "q\"}" , "c" : [ true , null , -1.5e3 ] } `,
		`[]`, `{}`, `"s"`, `[{"a":"\\"},[["]"]]]`, "{\"\xff\":1}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		for _, open := range []byte{'{', '['} {
			var keys []string
			var values [][]byte
			ok, _ := walk(data, open, func(lit, raw []byte) *Error {
				if open == '{' {
					key, ok := unquote(lit)
					if !ok {
						t.Fatalf("key %s does not unquote", lit)
					}
					keys = append(keys, key)
				}
				values = append(values, raw)
				return nil
			})
			wantKeys, wantValues, wantOK := decoderWalk(data, open)
			if ok != wantOK {
				t.Fatalf("%q as %c: ok %v, encoding/json says %v", data, open, ok, wantOK)
			}
			if !ok {
				continue
			}
			if len(values) != len(wantValues) {
				t.Fatalf("%q: %d values, want %d", data, len(values), len(wantValues))
			}
			for i := range values {
				if !bytes.Equal(values[i], wantValues[i]) || open == '{' && keys[i] != wantKeys[i] {
					t.Fatalf("%q: member %d is %q:%s, want %q:%s", data, i, keys[i], values[i], wantKeys[i], wantValues[i])
				}
			}
		}
	})
}

func decoderWalk(data []byte, open byte) (keys []string, values [][]byte, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim(open) {
		return nil, nil, false
	}
	for dec.More() {
		if open == '{' {
			tok, _ := dec.Token()
			keys = append(keys, tok.(string))
		}
		var raw json.RawMessage
		if dec.Decode(&raw) != nil {
			return nil, nil, false
		}
		values = append(values, raw)
	}
	return keys, values, true
}
