#include "app/cli.hpp"

int main(int argc, char** argv) { return docflow::app::run_cli(argc, argv); }
