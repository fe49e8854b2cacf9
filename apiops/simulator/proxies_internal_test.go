package simulator

import (
	"reflect"
	"testing"
)

// sameSettings compares field by field, so a field added to MTLSSettings must
// be added there too, or a change of it would make no revision.
func TestSameSettingsComparesEveryField(t *testing.T) {
	t.Parallel()
	base := MTLSSettings{SupportedProtocolList: []string{"TLS_1_3"}}
	if !sameSettings(base, base.clone()) || !sameSettings(MTLSSettings{}, MTLSSettings{SupportedProtocolList: []string{}}) {
		t.Fatal("equal settings differ")
	}
	for i := range reflect.TypeFor[MTLSSettings]().NumField() {
		changed := base.clone()
		f := reflect.ValueOf(&changed).Elem().Field(i)
		switch f.Kind() {
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"TLS_1_2"}))
		default:
			t.Fatalf("field %s: kind %s not covered by this test", reflect.TypeFor[MTLSSettings]().Field(i).Name, f.Kind())
		}
		if sameSettings(base, changed) {
			t.Errorf("sameSettings ignores %s", reflect.TypeFor[MTLSSettings]().Field(i).Name)
		}
	}
}
