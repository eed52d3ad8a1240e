package configs

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// typeCheck walks the YAML tree against the Spec type and reports every
// value of the wrong kind and every unknown field. The decoder stops at
// the first; Parse runs this after a decoder error so that a spec with
// several such mistakes gets them all at once. It is only as strict as
// the decoder: whatever it cannot judge (aliases, tagged values) it
// leaves to the decoder.
func typeCheck(c *collector, n ast.Node, t reflect.Type, path string, depth int) {
	if n == nil || depth > maxIndexDepth {
		return
	}
	switch v := n.(type) {
	case *ast.AnchorNode:
		typeCheck(c, v.Value, t, path, depth+1)
		return
	case *ast.AliasNode, *ast.TagNode, *ast.NullNode:
		return
	case *ast.CommentGroupNode:
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.NodeUnmarshaler]()) {
		u := reflect.New(t).Interface().(yaml.NodeUnmarshaler)
		if err := u.UnmarshalYAML(n); err != nil {
			var ve *valueError
			if errors.As(err, &ve) {
				c.add(path, "%s", ve.msg)
			} else {
				c.add(path, "%v", err)
			}
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		pairs, ok := mappingPairs(n)
		if !ok {
			c.add(path, "expected %s, found %s", typeKind(t), valueKind(n))
			return
		}
		for _, mv := range pairs {
			if mv == nil || mv.Key == nil {
				continue
			}
			if mv.Key.IsMergeKey() {
				typeCheck(c, mv.Value, t, path, depth+1)
				continue
			}
			k := keyText(mv.Key)
			p := key(path, k)
			if t.Kind() == reflect.Map {
				typeCheck(c, mv.Value, t.Elem(), p, depth+1)
				continue
			}
			ft, ok := yamlField(t, k)
			if !ok {
				msg := "unknown field"
				if names := fieldNames(path); len(names) > 0 {
					msg += " (allowed here: " + strings.Join(names, ", ") + ")"
				}
				c.add(p, "%s", msg)
				continue
			}
			typeCheck(c, mv.Value, ft, p, depth+1)
		}
	case reflect.Slice:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			c.add(path, "expected %s, found %s", typeKind(t), valueKind(n))
			return
		}
		for i, v := range seq.Values {
			typeCheck(c, v, t.Elem(), index(path, i), depth+1)
		}
	case reflect.String:
		if !isScalar(n) {
			c.add(path, "expected %s, found %s", typeKind(t), valueKind(n))
		}
	case reflect.Bool:
		if _, ok := n.(*ast.BoolNode); !ok {
			c.add(path, "expected %s, found %s", typeKind(t), valueKind(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		// The decoder takes "1000" and 1000.0 for an integer too: only
		// what it cannot take is reported here.
		if _, ok := n.(*ast.IntegerNode); !ok && !numberText(n) {
			c.add(path, "expected %s, found %s", typeKind(t), valueKind(n))
		}
	}
}

func mappingPairs(n ast.Node) ([]*ast.MappingValueNode, bool) {
	switch m := n.(type) {
	case *ast.MappingNode:
		return m.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{m}, true
	}
	return nil, false
}

func isScalar(n ast.Node) bool {
	switch n.(type) {
	case *ast.StringNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.LiteralNode,
		*ast.InfinityNode, *ast.NanNode:
		return true
	}
	return false
}

// valueKind names a YAML value the way the decoder's errors do.
func valueKind(n ast.Node) string {
	switch v := n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.BoolNode:
		return "true or false"
	case *ast.IntegerNode:
		return "an integer"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// numberText tells a string or float scalar that reads as a number.
func numberText(n ast.Node) bool {
	switch n.(type) {
	case *ast.StringNode, *ast.FloatNode:
	default:
		return false
	}
	tk := n.GetToken()
	if tk == nil {
		return false
	}
	_, err := strconv.ParseFloat(strings.TrimSpace(tk.Value), 64)
	return err == nil
}
