package cnet

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Chains of the table, in the order they are written.
const (
	ChainPrerouting  = "prerouting"
	ChainOutput      = "output"
	ChainPostrouting = "postrouting"
	ChainForward     = "forward"
)

// loopback is 127.0.0.0/8: the output chain leaves it alone, as a DNAT of
// a loopback destination to a container would be dropped as a martian
// without route_localnet.
var loopback = netip.MustParsePrefix("127.0.0.0/8")

// table is slate's nftables table.
func table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
}

// writeTable queues, on c, the replacement of table ip slate with the
// rules of h: add (so that the delete finds it), delete, then create it
// anew with its chains and rules. The kernel applies the batch at once or
// not at all, so the table is never seen half written and a second call
// leaves exactly one set of rules.
//
//	table ip slate {
//	  chain prerouting { type nat hook prerouting priority dstnat;
//	    fib daddr type local meta l4proto P th dport HOSTPORT dnat to ADDR:PORT }
//	  chain output { type nat hook output priority dstnat;
//	    ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto P th dport HOSTPORT dnat to ADDR:PORT }
//	  chain postrouting { type nat hook postrouting priority srcnat;
//	    ip saddr SUBNET oifname != BRIDGE masquerade
//	    ip saddr SUBNET oifname BRIDGE ct status dnat masquerade }
//	  chain forward { type filter hook forward priority filter; policy drop;
//	    ct state established,related accept
//	    iifname BRIDGE accept
//	    oifname BRIDGE ct status dnat accept }
//	}
//
// The second masquerade is the hairpin: a container reaching a published
// port through a host address (the gateway's, or another of the host's)
// is answered through the host, not straight over the bridge.
//
// The forward chain is Docker's default, kept small: ip_forward is on for
// the containers only. Containers may go out; from outside, only a
// published port reaches a container (not a route to the subnet through
// this machine), and the machine does not route between its other
// interfaces.
func writeTable(c *nftables.Conn, h Host) {
	t := table()
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	pre := c.AddChain(&nftables.Chain{Name: ChainPrerouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	out := c.AddChain(&nftables.Chain{Name: ChainOutput, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	post := c.AddChain(&nftables.Chain{Name: ChainPostrouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	for _, p := range h.Ports {
		c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: dnat(p, false), UserData: comment(p)})
		c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: dnat(p, true), UserData: comment(p)})
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: masquerade(h.Subnet, h.Bridge, false)})
	c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: masquerade(h.Subnet, h.Bridge, true)})
	drop := nftables.ChainPolicyDrop
	fwd := c.AddChain(&nftables.Chain{Name: ChainForward, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: append(ctBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept)})
	c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(h.Bridge)},
		accept,
	}})
	c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: append([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(h.Bridge)},
	}, append(ctBits(expr.CtKeySTATUS, ctStatusDNAT), accept)...)})
}

// ctBits matches a conntrack field (state or status) with any of bits
// set.
func ctBits(key expr.CtKey, bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// comment is nft's rule comment (userdata type 0, NUL-terminated), so
// `nft list table ip slate` shows which container a rule is for.
func comment(p Port) []byte {
	s := fmt.Sprintf("%s %d/%s", p.Container, p.HostPort, p.Proto)
	if len(s) > 120 {
		s = s[:120]
	}
	b := append([]byte{0, byte(len(s) + 1)}, s...)
	return append(b, 0)
}

// dnat matches HostPort of p to a local address (excluding loopback ones
// in the output chain) and rewrites the destination to the container.
func dnat(p Port, output bool) []expr.Any {
	var e []expr.Any
	if output {
		e = append(e, prefixMatch(16, loopback, expr.CmpOpNeq)...)
	}
	proto := byte(unix.IPPROTO_TCP)
	if p.Proto == "udp" {
		proto = unix.IPPROTO_UDP
	}
	addr := p.Addr.As4()
	return append(e,
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p.HostPort)},
		&expr.Immediate{Register: 1, Data: addr[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(p.ContainerPort)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2},
	)
}

// masquerade rewrites the source of the subnet's traffic: leaving through
// any interface but the bridge, or (hairpin) going back into the bridge
// after a DNAT.
func masquerade(subnet netip.Prefix, bridge string, hairpin bool) []expr.Any {
	e := prefixMatch(12, subnet, expr.CmpOpEq)
	op := expr.CmpOpNeq
	if hairpin {
		op = expr.CmpOpEq
	}
	e = append(e,
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: ifname(bridge)},
	)
	if hairpin {
		e = append(e, ctBits(expr.CtKeySTATUS, ctStatusDNAT)...)
	}
	return append(e, &expr.Masq{})
}

// ctStatusDNAT is IPS_DST_NAT of the kernel's enum ip_conntrack_status.
const ctStatusDNAT = 1 << 5

// prefixMatch compares the IPv4 address at offset of the network header
// (12 source, 16 destination) with prefix.
func prefixMatch(offset uint32, prefix netip.Prefix, op expr.CmpOp) []expr.Any {
	mask := make([]byte, 4)
	binary.BigEndian.PutUint32(mask, ^uint32(0)<<(32-prefix.Bits()))
	net := prefix.Masked().Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: net[:]},
	}
}

// ifname is an interface name as the kernel compares it: NUL-padded to
// IFNAMSIZ.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}
