# syntax=docker/dockerfile:1
# tenant-operator image: `docker build -t tenant-operator:0.1.0 .`

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so that editing the operator's sources does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > src/kubectl_tenant.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
# The dummy build above left fresh-looking artefacts for the crate itself; make sure the real
# sources are compiled.
RUN touch src/main.rs src/kubectl_tenant.rs src/lib.rs \
    && cargo build --release --locked \
    && cp target/release/tenant-operator /tenant-operator \
    && cp target/release/kubectl-tenant /kubectl-tenant

# glibc and libgcc only, no shell, runs as the distroless "nonroot" user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /tenant-operator /usr/local/bin/tenant-operator
# The kubectl plugin, for `docker cp` or `kubectl debug` sessions (the krew manifest in
# deploy/krew/ installs it on a workstation).
COPY --from=build /kubectl-tenant /usr/local/bin/kubectl-tenant
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tenant-operator"]
CMD ["run", "--config", "/etc/tenant-operator/config.yaml"]
