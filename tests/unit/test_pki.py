"""The test control plane's certificates (devcluster/pki.py): the CA and what it issues start from
one builder, so both get a fresh serial and the same validity window."""

import datetime as dt

from cryptography import x509
from cryptography.x509.oid import NameOID

from devcluster.pki import CertificateAuthority


def test_the_ca_and_the_certificates_it_issues_share_the_validity_window_and_each_has_its_own_serial():
    before = dt.datetime.now(dt.timezone.utc)
    ca = CertificateAuthority.create("test-ca")
    cert_pem, _ = ca.issue("alice", ["devs"], server_hosts=["127.0.0.1"])
    after = dt.datetime.now(dt.timezone.utc)
    leaf = x509.load_pem_x509_certificate(cert_pem)
    for cert in (ca.cert, leaf):
        assert before - dt.timedelta(hours=1, seconds=1) <= cert.not_valid_before_utc <= after - dt.timedelta(hours=1)
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=7, hours=1)
    assert ca.cert.subject == ca.cert.issuer
    assert ca.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "test-ca"
    assert leaf.issuer == ca.cert.subject
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "devs"
    leaf.verify_directly_issued_by(ca.cert)
    assert leaf.serial_number != ca.cert.serial_number
