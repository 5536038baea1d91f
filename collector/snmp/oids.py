"""The only columns the service reads (numeric OIDs: Debian ships no MIB files).

Interfaces from IF-MIB (ifXTable for names, aliases, speeds and 64-bit counters; ifTable for
statuses); ARP from IP-MIB ipNetToPhysicalTable (RFC 4293) with fallback to the old
ipNetToMediaTable; routes from IP-FORWARD-MIB inetCidrRouteTable (RFC 4292) with fallback to
the old ipCidrRouteTable (RFC 2096)."""

from __future__ import annotations

from collector.snmp.ber import Oid

SYS_UPTIME: Oid = (1, 3, 6, 1, 2, 1, 1, 3)
SYS_NAME: Oid = (1, 3, 6, 1, 2, 1, 1, 5)

_IFX: Oid = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
_IF: Oid = (1, 3, 6, 1, 2, 1, 2, 2, 1)
INTERFACE_COLUMNS: dict[str, Oid] = {
    "ifName": (*_IFX, 1),
    "ifAlias": (*_IFX, 18),
    "ifAdminStatus": (*_IF, 7),
    "ifOperStatus": (*_IF, 8),
    "ifHighSpeed": (*_IFX, 15),
    "ifHCInOctets": (*_IFX, 6),
    "ifHCOutOctets": (*_IFX, 10),
}

# index: ifIndex . addrType . addrLen . addr
_NTP: Oid = (1, 3, 6, 1, 2, 1, 4, 35, 1)
ARP_NEW: dict[str, Oid] = {
    "ipNetToPhysicalPhysAddress": (*_NTP, 4),
    "ipNetToPhysicalType": (*_NTP, 6),
}
# index: ifIndex . a.b.c.d
_NTM: Oid = (1, 3, 6, 1, 2, 1, 4, 22, 1)
ARP_OLD: dict[str, Oid] = {"ipNetToMediaPhysAddress": (*_NTM, 2), "ipNetToMediaType": (*_NTM, 4)}

# index: destType . destLen . dest . pfxLen . policyLen . policy . nextHopType . nhLen . nextHop
_ICR: Oid = (1, 3, 6, 1, 2, 1, 4, 24, 7, 1)
ROUTES_NEW: dict[str, Oid] = {"inetCidrRouteIfIndex": (*_ICR, 7), "inetCidrRouteType": (*_ICR, 8)}
# index: dest(4) . mask(4) . tos . nextHop(4)
_CR: Oid = (1, 3, 6, 1, 2, 1, 4, 24, 4, 1)
ROUTES_OLD: dict[str, Oid] = {"ipCidrRouteIfIndex": (*_CR, 5), "ipCidrRouteType": (*_CR, 6)}

# ipNetToPhysicalType / ipNetToMediaType
ARP_TYPE_INVALID = 2
ARP_TYPE_LOCAL = 5
# inetCidrRouteType / ipCidrRouteType
ROUTE_TYPE_REJECT = 2
ROUTE_TYPE_LOCAL = 3
# ifOperStatus
OPER_UP = 1
OPER_DOWN = 2
OPER_LOWER_LAYER_DOWN = 7
