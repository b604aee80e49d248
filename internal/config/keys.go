package config

import (
	"reflect"
	"sort"
	"strings"
)

// AllKeys lists every configuration key the decoder accepts, found by
// walking the mapstructure tags of Config (the bgp section included).
// Keys inside a list of maps are written with "[]":
// bgp.neighbors[].max_prefixes.limit is the limit of any neighbour. A list
// of maps is a key itself (bgp.neighbors) as well as the parent of its
// elements' keys; a nested map (bgp.graceful_restart) is only a parent.
func AllKeys() []string {
	var keys []string
	walkKeys(reflect.TypeOf(Config{}), "", &keys)
	sort.Strings(keys)
	return keys
}

func walkKeys(t reflect.Type, prefix string, keys *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if opts == "squash" && ft.Kind() == reflect.Struct {
			walkKeys(ft, prefix, keys)
			continue
		}
		key := prefix + name
		switch {
		case ft.Kind() == reflect.Struct:
			walkKeys(ft, key+".", keys)
		case ft.Kind() == reflect.Slice && elem(ft).Kind() == reflect.Struct:
			*keys = append(*keys, key)
			walkKeys(elem(ft), key+"[].", keys)
		default:
			*keys = append(*keys, key)
		}
	}
}

// elem is the element type of a slice, through pointers.
func elem(t reflect.Type) reflect.Type {
	e := t.Elem()
	for e.Kind() == reflect.Pointer {
		e = e.Elem()
	}
	return e
}
