package sqldb

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"
)

// TestEncodeFlatIsJSON: the reflection-free encoder of flat fields writes what json.Marshal of
// the same texts would mean, for every kind of scalar and every character that needs escaping.
func TestEncodeFlatIsJSON(t *testing.T) {
	m := map[string]any{
		"plain": "text", "quote\"key": `a "quoted" \ back\slash`, "ctl": "tab\tnl\ncr\rbell\x07del\x7f",
		"unicode": "Ünïcødé \u2028 \u2029 😀 <script>&", "empty": "", "nil": nil,
		"int": int64(-42), "uint": uint64(math.MaxUint64), "float": 3.25, "bool": true,
		"time": time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.UTC), "small": int32(7),
	}
	fields, types, ok, err := encodeFlat(m)
	if err != nil || !ok {
		t.Fatalf("encodeFlat = %v, %v", ok, err)
	}
	var got, want map[string]any
	if err := json.Unmarshal([]byte(fields), &got); err != nil {
		t.Fatalf("fields are not JSON: %v\n%s", err, fields)
	}
	vals, typs, err := encodeValue(m, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(vals)
	json.Unmarshal(b, &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fields = %v\nwant %v", got, want)
	}
	var gotT, wantT map[string]any
	if err := json.Unmarshal([]byte(types), &gotT); err != nil {
		t.Fatalf("types are not JSON: %v\n%s", err, types)
	}
	b, _ = json.Marshal(typs)
	json.Unmarshal(b, &wantT)
	if !reflect.DeepEqual(gotT, wantT) {
		t.Errorf("types = %v\nwant %v", gotT, wantT)
	}
	// And back to the same Go values.
	back, err := decodeFields(fields, types)
	if err != nil {
		t.Fatal(err)
	}
	if back["uint"] != uint64(math.MaxUint64) || back["small"] != int64(7) || !back["time"].(time.Time).Equal(m["time"].(time.Time)) || back["nil"] != nil {
		t.Errorf("decoded = %#v", back)
	}

	for _, bad := range []map[string]any{{"k": "nul\x00"}, {"bad\xff": "v"}, {"k": "bad\xff"}} {
		if _, _, _, err := encodeFlat(bad); err == nil {
			t.Errorf("encodeFlat(%q) accepted invalid text", bad)
		}
	}
	if _, _, ok, _ := encodeFlat(map[string]any{"list": []any{"a"}}); ok {
		t.Error("encodeFlat took a list")
	}
}
