package node

import (
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/opendms/dms/types"
)

var testHardware = types.Hardware{Cores: 4, Memory: 16 * gib, Disk: 200 * gib, GPUs: []types.GPU{{Vendor: "nvidia"}}}

func TestOfferResolve(t *testing.T) {
	tests := []struct {
		name             string
		cpu, memory, dsk string
		want             types.Resources
	}{
		{"defaults", "100%", "50%", "10%", types.Resources{CPU: 4000, Memory: 8 * gib, Disk: 20 * gib, GPUs: 1}},
		{"absolute", "2", "8GiB", "20GiB", types.Resources{CPU: 2000, Memory: 8 * gib, Disk: 20 * gib, GPUs: 1}},
		{"fractions", "0.5", "1.5GiB", "0", types.Resources{CPU: 500, Memory: 1536 << 20, GPUs: 1}},
		{"millicores and spaces", "500m", " 25 % ", "0%", types.Resources{CPU: 500, Memory: 4 * gib, GPUs: 1}},
		{"share rounds down", "33%", "100%", "100%", types.Resources{CPU: 1320, Memory: 16 * gib, Disk: 200 * gib, GPUs: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOffer()
			o.CPU, o.Memory, o.Disk = tt.cpu, tt.memory, tt.dsk
			got, err := o.Resolve(testHardware)
			if err != nil || got != tt.want {
				t.Fatalf("Resolve = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestOfferErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Offer)
		hw     types.Hardware
		want   []string // each must appear in the error
	}{
		{"more memory than the machine", func(o *Offer) { o.Memory = "900GiB" }, testHardware,
			[]string{"offer.memory: 900 GiB is more than the machine has (16 GiB)"}},
		{"more cores than the machine", func(o *Offer) { o.CPU = "8" }, testHardware,
			[]string{"offer.cpu: 8 cores is more than the machine has (4 cores)"}},
		{"over 100%", func(o *Offer) { o.Disk = "150%" }, testHardware,
			[]string{`offer.disk: "150%" is not a share of the machine`}},
		{"bad size", func(o *Offer) { o.Memory = "lots" }, testHardware,
			[]string{`offer.memory: types: bad size: "lots"`, "or a share of the machine such as 50%"}},
		{"empty cpu", func(o *Offer) { o.CPU = "" }, testHardware, []string{"offer.cpu: "}},
		{"every bad field", func(o *Offer) { o.CPU, o.Price = "-1", -2*types.Credit }, testHardware,
			[]string{"offer.cpu: ", "offer.price: -2 is not a price"}},
		{"label name", func(o *Offer) { o.Labels = map[string]string{"a=b": "c"} }, testHardware,
			[]string{`offer.labels: "a=b" is not a label name`}},
		{"share of unknown memory", func(*Offer) {}, types.Hardware{Cores: 2},
			[]string{"offer.memory: 50% of the machine, but detection could not tell the machine's memory"}},
		{"energy", func(o *Offer) { o.Energy = EnergyConfig{CarbonIntensity: -1, File: "f", Command: "c", Refresh: "soon"} }, testHardware,
			[]string{"offer.energy.carbon_intensity: -1", "offer.energy: set file or command, not both", `offer.energy.refresh: "soon" is not a positive duration`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOffer()
			tt.modify(&o)
			_, err := o.Resolve(tt.hw)
			if err == nil {
				t.Fatal("Resolve succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			var oe *OfferError
			if !errors.As(err, &oe) {
				t.Errorf("error %q is not an *OfferError", err)
			}
		})
	}
}

func TestOfferAbsoluteOnUnknownHardware(t *testing.T) {
	o := Offer{CPU: "2", Memory: "1GiB", Disk: "1GiB"}
	got, err := o.Resolve(types.Hardware{})
	if err != nil || got != (types.Resources{CPU: 2000, Memory: gib, Disk: gib}) {
		t.Fatalf("Resolve = %v, %v", got, err)
	}
}

func TestOfferYAML(t *testing.T) {
	const doc = `
cpu: "75%"
memory: 4GiB
price: 0.5
labels: {region: eu}
energy:
  renewable: true
  command: "echo renewable: true"
  refresh: 30s
`
	o := DefaultOffer()
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&o); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.CPU != "75%" || o.Memory != "4GiB" || o.Disk != "10%" || o.Price != types.Credit/2 || o.Labels["region"] != "eu" || !o.Energy.Renewable {
		t.Fatalf("decoded %+v", o)
	}
	if d, err := o.Energy.RefreshInterval(); err != nil || d.String() != "30s" {
		t.Fatalf("refresh = %v, %v", d, err)
	}
	dec = yaml.NewDecoder(strings.NewReader("cpus: 2\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&o); err == nil {
		t.Fatal("an unknown field was accepted")
	}
	for _, price := range []string{".nan", "1e3", "0.1234567"} {
		err := yaml.Unmarshal([]byte("price: "+price), &o)
		if !errors.Is(err, types.ErrBadCredits) {
			t.Errorf("price: %s decoded as %s, %v; want ErrBadCredits", price, o.Price, err)
		}
	}
}
