"""Local cloud for roost (docs/cloud.md): stdlib HTTP services and a real Mosquitto, one SQLite file.

- local.LocalCloud     everything below composed: one HTTP port, the broker, the cloud's MQTT client
- db.Database          thread-safe SQLite storage (bootstrap configs, ...)
- http.HTTPService     ThreadingHTTPServer + a small method/path router
- bootstrap.BootstrapService   the Mainflux/Magistrala bootstrap contract
- pki.PKI, broker.Broker       the CA and broker certificate; Mosquitto with live accounts and ACLs
- users, mapping, claims       RainMaker login and user-node mapping; Particle-style claim codes
- registration, seal           midPoint-style self-registration with a registration key; its sealed answer
- thingspeak                   ThingSpeak-compatible channels: write (single, bulk) and read APIs
- readings                     the devices' SenML readings on their data channel, stored once per (node, seq)
"""
