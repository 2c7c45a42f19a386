package main

// The XDR providers this binary offers. Each registers itself with the xdr registry in init;
// adding a provider is one import here.
import (
	_ "github.com/quarry-dfir/quarry/xdr/defender"
)
