/// keybroker's version, written in this one place. The Makefile reads it from the line below for
/// the packages (`make deb`, `make rpm`) and the man pages, so binaries and packages agree.
public enum KeybrokerVersion {
    public static let number = "0.1.0"
}
