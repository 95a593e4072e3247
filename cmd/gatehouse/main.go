// Command gatehouse is the Gatehouse API security gateway.
package main

import (
	"os"

	"github.com/gatehouse/gatehouse/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
