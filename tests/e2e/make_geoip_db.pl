#!/usr/bin/perl
# Writes a small MaxMind DB (the GeoLite2-City layout: country.iso_code, location.latitude and
# .longitude) for tests, with Debian's libmaxmind-db-writer-perl.
# Usage: make_geoip_db.pl OUT.mmdb NETWORK=CC,LAT,LON ...
use strict;
use warnings;
use MaxMind::DB::Writer::Tree;

my $out = shift or die "usage: $0 OUT.mmdb NETWORK=CC,LAT,LON ...\n";
my %types = (country => 'map', iso_code => 'utf8_string', location => 'map',
             latitude => 'double', longitude => 'double');
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version => 6, record_size => 24, database_type => 'Portico-Test-City',
    languages => ['en'], description => { en => 'Portico test GeoIP database' },
    map_key_type_callback => sub { $types{ $_[0] } },
    remove_reserved_networks => 0);
for my $arg (@ARGV) {
    my ($network, $place) = split /=/, $arg, 2;
    my ($cc, $lat, $lon) = split /,/, $place;
    $tree->insert_network($network, { country => { iso_code => $cc },
                                      location => { latitude => $lat + 0.0,
                                                    longitude => $lon + 0.0 } });
}
open my $fh, '>:raw', $out or die "cannot write $out: $!\n";
$tree->write_tree($fh);
close $fh;
