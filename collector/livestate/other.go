//go:build !linux && !windows && !darwin

package livestate

import "context"

func processes(context.Context, *hasher) ([]Process, error) { return nil, errUnsupported }

func connections(context.Context) ([]Connection, error) { return nil, errUnsupported }

func users(context.Context) ([]User, error) { return nil, errUnsupported }
