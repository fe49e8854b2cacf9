package worker

import "testing"

// A project behind a barrier holds every command its consumer has out, beyond the
// limit, without taking places from the others; back under the limit, what it holds
// above its share stays until freed.
func TestRoomLift(t *testing.T) {
	r := newRoom(4)
	if got := r.take("a", 4); got != 4 {
		t.Fatalf("a took %d of 4", got)
	}
	r.lift("a", 10)
	if got := r.take("a", 20); got != 6 {
		t.Errorf("lifted a took %d more, want 6 (10 in all)", got)
	}
	if got := r.take("b", 4); got != 4 {
		t.Errorf("b took %d while a is lifted, want the whole limit", got)
	}
	r.unlift("a")
	if got := r.take("b", 1); got != 0 {
		t.Errorf("b took %d once a is back under the limit holding 10", got)
	}
	r.free("a", 10)
	r.free("b", 4)
	if got := r.take("b", 4); got != 4 {
		t.Errorf("b took %d of an empty room", got)
	}
}
