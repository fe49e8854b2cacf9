package bench

import (
	"math"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(100-i) * time.Millisecond // 100ms … 1ms, unsorted
	}
	tests := []struct {
		name string
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value", ms(7), 99, 7 * time.Millisecond},
		{"median of odd count", ms(5, 1, 3), 50, 3 * time.Millisecond},
		{"median of even count is the lower middle", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p100 is the maximum", hundred, 100, 100 * time.Millisecond},
		{"tiny p is the minimum", hundred, 0.001, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.ds, tt.p); got != tt.want {
				t.Errorf("Percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
	if hundred[0] != 100*time.Millisecond {
		t.Error("Percentile sorted its argument in place")
	}
}

func TestRatio(t *testing.T) {
	if got := Ratio(900, 1000); got != 0.9 {
		t.Errorf("Ratio(900, 1000) = %v, want 0.9", got)
	}
	for _, tt := range [][2]float64{{1, 0}, {math.NaN(), 1}, {1, math.NaN()}} {
		if got := Ratio(tt[0], tt[1]); !math.IsNaN(got) {
			t.Errorf("Ratio(%v, %v) = %v, want NaN", tt[0], tt[1], got)
		}
	}
	if got := formatRatio(Ratio(1280, 1000)); got != "1.28×" {
		t.Errorf("formatRatio = %q, want 1.28×", got)
	}
	if got := formatRatio(Ratio(1, 0)); got != "-" {
		t.Errorf("formatRatio of an unknown ratio = %q, want -", got)
	}
}

func TestSelect(t *testing.T) {
	all := Scenarios(true)
	got, err := Select(all, "2, 5")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "2" || got[1].Name != "5" {
		t.Errorf("Select(2, 5) = %+v", got)
	}
	if _, err := Select(all, "9"); err == nil {
		t.Error("Select(9) did not fail")
	}
	if got := Scale(all, 2); got[0].Backlogs[0] != 2*all[0].Backlogs[0] {
		t.Errorf("Scale(2) gave %d commands, want %d", got[0].Backlogs[0], 2*all[0].Backlogs[0])
	}
}
