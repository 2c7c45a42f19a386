package main

import "github.com/quarry-dfir/quarry/defendersim"

func init() {
	register("defender-sim", "run the Microsoft Defender for Endpoint emulator alone (for training and tests)", defendersim.RunCLI)
}
