from devstack.procs import free_port


def test_free_port_never_hands_out_a_port_twice() -> None:
    # the kernel may return one ephemeral port to consecutive binds; Triton then fails to start
    # with "cannot listen to HTTP requests and metrics requests at the same address and port"
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
