// kube-site: every process of one real Kubernetes site, from one pinned module
// graph, linked into one binary (hyperkube style) so the shared packages compile
// and link once:
//
//	kube-site etcd [flags...]                 etcd (the version k8s.io/kubernetes pins)
//	kube-site apiserver [flags...]            kube-apiserver
//	kube-site controller-manager [flags...]   kube-controller-manager
//	kube-site scheduler [flags...]            kube-scheduler
//	kube-site kwok [flags...]                 kwok: fake nodes and kubelets
//	kube-site kwok-stages                     prints kwok's default stages (for its --config)
//
// Each component still runs as its own process; the site launcher
// (integration-tests, `manifold-sites`) starts them. Built by
// scripts/install-kube-site.sh, which stamps the Kubernetes version.
package main

import (
	"fmt"
	"os"
	_ "time/tzdata" // CronJob time zones

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kwokconfig "sigs.k8s.io/kwok/pkg/config"
	kwokcmd "sigs.k8s.io/kwok/pkg/kwok/cmd"
	kwoklog "sigs.k8s.io/kwok/pkg/log"
	"sigs.k8s.io/kwok/pkg/utils/signals"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodeheartbeat "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
)

// kwok's default stages (node initialise, node heartbeat with lease, pod
// ready/complete/delete), as one YAML stream for a kwok --config file. They are
// kwok's own, embedded in its module at the pinned version.
func printKwokStages() {
	for _, stage := range []string{
		nodefast.DefaultNodeInit,
		nodeheartbeat.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady,
		podfast.DefaultPodComplete,
		podfast.DefaultPodDelete,
	} {
		fmt.Println("---")
		fmt.Print(stage)
	}
}

// kwok's own main, with the arguments given.
func runKwok(args []string) int {
	// The Kubernetes packages linked beside kwok register their own flags
	// (--version among them) on the global pflag set, which cobra merges into
	// every command; kwok defines its own. This process runs kwok alone.
	pflag.CommandLine = pflag.NewFlagSet("kwok", pflag.ExitOnError)
	flagset := pflag.NewFlagSet("global", pflag.ContinueOnError)
	flagset.ParseErrorsAllowlist.UnknownFlags = true
	flagset.Usage = func() {}
	ctx := signals.SetupSignalContext()
	ctx, logger := kwoklog.InitFlags(ctx, flagset)
	ctx, err := kwokconfig.InitFlags(ctx, flagset)
	if err != nil {
		logger.Error("Init config flags", "err", err)
		return 1
	}
	command := kwokcmd.NewCommand(ctx)
	command.PersistentFlags().AddFlagSet(flagset)
	command.SetArgs(args)
	if err := command.ExecuteContext(ctx); err != nil {
		logger.Error("Execute exit", "err", err)
		return 1
	}
	return 0
}

func main() {
	if len(os.Args) >= 2 {
		switch os.Args[1] {
		case "etcd":
			etcdmain.Main(append([]string{"etcd"}, os.Args[2:]...))
			return
		case "kwok":
			os.Exit(runKwok(os.Args[2:]))
		case "kwok-stages":
			printKwokStages()
			return
		}
	}
	commands := map[string]func() *cobra.Command{
		"apiserver":          apiserver.NewAPIServerCommand,
		"controller-manager": func() *cobra.Command { return controllermanager.NewControllerManagerCommand() },
		"scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	}
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: kube-site etcd|apiserver|controller-manager|scheduler|kwok [flags...]")
		os.Exit(2)
	}
	command := commands[os.Args[1]]()
	command.SetArgs(os.Args[2:])
	os.Exit(cli.Run(command))
}
