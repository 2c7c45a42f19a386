package limit_test

import (
	"testing"

	"github.com/quarry-dfir/quarry/scheduler/limit"
	"github.com/quarry-dfir/quarry/scheduler/limit/limittest"
)

func TestMemory(t *testing.T) {
	limittest.Run(t, func(t *testing.T, limits limit.LimitsFunc) limit.Limiter { return limit.NewMemory(limits) })
}
