#!/bin/sh
echo "registries: {"
