import faust
from pydantic import SecretStr

from worker.app import broker_credentials
from worker.settings import Settings


def test_plaintext_has_no_credentials():
    assert broker_credentials(Settings()) is None


def test_sasl_over_tls_credentials_from_settings():
    creds = broker_credentials(Settings(kafka_security_protocol="SASL_SSL",
                                        kafka_sasl_mechanism="SCRAM-SHA-512",
                                        kafka_sasl_username="svc",
                                        kafka_sasl_password=SecretStr("s3cret")))
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.username == "svc" and creds.password == "s3cret"
    assert creds.ssl_context is not None
    assert "s3cret" not in repr(Settings(kafka_sasl_password=SecretStr("s3cret")))


def test_tls_only_credentials():
    assert isinstance(broker_credentials(Settings(kafka_security_protocol="SSL")),
                      faust.SSLCredentials)
