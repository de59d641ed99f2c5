"""Fleet-wide settings; every key and its default is in deploy/pyinfra/fleet/defaults.py.
Secrets are not here: the deploy generates them into ~/.config/appliance-deploy/<fleet>.json
(or takes APPLIANCE_DEPLOY_<NAME> from the environment)."""

fleet_name = "example"
public_url = "https://convert.example.com"
# The operator's certificate (files on the machine that runs the deploy); without them the lb
# makes a self-signed one on its first deploy.
tls_cert_file = ""
tls_key_file = ""
# Where you administer from (office, VPN, bastion): the only networks SSH answers. Left
# empty, SSH answers only the address each deploy comes from. Prometheus and Grafana listen
# on the monitoring host's loopback: ssh -L 3000:127.0.0.1:3000 -L 9090:127.0.0.1:9090 ...
admin_networks = ["203.0.113.7/32"]
max_upload_bytes = 100 * 1024 * 1024
# MinIO: pin the release and its SHA-256 (from dl.min.io's .sha256sum next to the binary).
minio_url = (
    "https://dl.min.io/server/minio/release/linux-amd64/archive/minio.RELEASE.2025-09-07T16-13-09Z"
)
minio_sha256 = "replace-with-the-published-sha256"
mc_sha256 = ""
s3_public_url = "https://files.example.com"
