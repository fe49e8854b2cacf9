package messages

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// The walkers below split JSON that json.Valid has accepted into an object's members
// or an array's elements, without building tokens: they only find where each value
// ends. On input that is not valid JSON their result is undefined, so decode checks
// the whole command first.

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n') {
		i++
	}
	return i
}

// stringEnd returns the index after the string that starts with the quote at data[i].
func stringEnd(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(data)
}

// valueEnd returns the index after the value that starts at data[i].
func valueEnd(data []byte, i int) int {
	switch data[i] {
	case '"':
		return stringEnd(data, i)
	case '{', '[':
		depth := 0
		for ; i < len(data); i++ {
			switch data[i] {
			case '"':
				i = stringEnd(data, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return len(data)
	}
	for ; i < len(data); i++ { // a number, true, false or null
		switch data[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return i
}

// walk calls fn for each element of the array or member of the object that data holds,
// with its key ("" for an array's elements) and raw value, until fn returns an error.
// ok is false when data is not of the kind open ('{' or '[') says.
func walk(data []byte, open byte, fn func(key []byte, value []byte) *Error) (ok bool, err *Error) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != open {
		return false, nil
	}
	if i = skipSpace(data, i+1); data[i] == '}' || data[i] == ']' {
		return true, nil
	}
	for {
		var key []byte
		if open == '{' {
			end := stringEnd(data, i)
			key = data[i:end]
			i = skipSpace(data, skipSpace(data, end)+1) // past the colon
		}
		end := valueEnd(data, i)
		if err := fn(key, data[i:end]); err != nil {
			return true, err
		}
		if i = skipSpace(data, end); data[i] != ',' {
			return true, nil
		}
		i = skipSpace(data, i+1)
	}
}

// unquote returns the string a JSON string literal holds.
func unquote(lit []byte) (string, bool) {
	if len(lit) < 2 || lit[0] != '"' {
		return "", false
	}
	inner := lit[1 : len(lit)-1]
	if utf8.Valid(inner) && bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	var s string // escapes, or bytes json replaces with U+FFFD
	return s, json.Unmarshal(lit, &s) == nil
}
