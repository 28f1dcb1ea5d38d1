// Decodes lease values the way flanneld's Go code does: encoding/json into
// structs with flannel's field names (a lease's attributes, with BackendData
// kept raw, then the vxlan backend's VNI and VtepMAC from it), so a test can
// show what a flanneld node reads from a value ringlay wrote. Reads one value
// per line on stdin; prints one line per value: the decoded fields, or the
// decoder's error.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
)

type leaseAttrs struct {
	PublicIP      string
	PublicIPv6    *string
	BackendType   string          `json:",omitempty"`
	BackendData   json.RawMessage `json:",omitempty"`
	BackendV6Data json.RawMessage `json:",omitempty"`
}

type vxlanAttrs struct {
	VNI     uint32
	VtepMAC string
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var attrs leaseAttrs
		if err := json.Unmarshal(in.Bytes(), &attrs); err != nil {
			fmt.Printf("error: %v\n", err)
			continue
		}
		line := fmt.Sprintf("PublicIP=%s BackendType=%s", attrs.PublicIP, attrs.BackendType)
		if len(attrs.BackendData) > 0 && attrs.BackendType == "vxlan" {
			var vx vxlanAttrs
			if err := json.Unmarshal(attrs.BackendData, &vx); err != nil {
				fmt.Printf("error: %v\n", err)
				continue
			}
			line += fmt.Sprintf(" VNI=%d VtepMAC=%s", vx.VNI, vx.VtepMAC)
		}
		fmt.Println(line)
	}
}
